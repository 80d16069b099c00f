"""benchmarks.throughput: its FLOP counter against a hand count, and a tiny end-to-end run."""

import contextlib
import json
import math

import pytest
import torch

from benchmarks import flops, reference, throughput, timing
from facegan.data import load_faces
from facegan.models import build_models
from facegan.runtime import resolve_precision
from facegan.trainer import Trainer

CPU_AUTO_IS_BF16 = resolve_precision("auto", torch.device("cpu")) is not None


@contextlib.contextmanager
def restored_threads():
    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)


def hand_count_macs(width: int, z: int, size: int) -> tuple[list[int], list[int]]:
    """Per-layer MACs per image of the DCGAN pair, written out layer by layer."""
    k = 4 * 4
    stages = int(math.log2(size)) - 2
    widths = [width * 2**i for i in range(stages)]  # image end -> 4x4
    # G: z -> 4x4 (one input pixel), then each transposed conv doubles the map it reads.
    g = [z * widths[-1] * k]
    side = 4
    for c_in, c_out in zip(widths[::-1], widths[::-1][1:] + [3], strict=True):
        g.append(side * side * c_in * c_out * k)
        side *= 2
    # D: each conv halves the map it writes, then a 4x4 conv to one output pixel.
    d = []
    side = size // 2
    for c_in, c_out in zip([3] + widths[:-1], widths, strict=True):
        d.append(side * side * c_in * c_out * k)
        side //= 2
    d.append(widths[-1] * 1 * k)
    return g, d


@pytest.mark.parametrize("size", [32, 64])
def test_flop_counter_matches_a_hand_count(size):
    discriminator, generator = build_models(100, 64, size)
    counted = flops.step_flops(generator, discriminator, 100, size)
    g, d = hand_count_macs(64, 100, size)
    assert counted["g_layer_macs"] == g
    assert counted["d_layer_macs"] == d
    assert counted["step_gflop"] == pytest.approx(
        2 * (3 * sum(g) + 9 * sum(d) - g[0] - 2 * d[0]) / 1e9
    )


def test_flop_counts_match_the_published_figures():
    discriminator, generator = build_models(100, 64, 64)
    counted = flops.step_flops(generator, discriminator, 100, 64)
    assert counted["g_forward_gflop"] == pytest.approx(0.209, abs=0.001)
    assert counted["d_forward_gflop"] == pytest.approx(0.208, abs=0.001)
    assert counted["step_gflop"] == pytest.approx(2.48, abs=0.01)
    discriminator, generator = build_models(100, 64, 32)
    assert flops.step_flops(generator, discriminator, 100, 32)["step_gflop"] == (
        pytest.approx(0.42, abs=0.01)
    )


@pytest.mark.parametrize("size", [32, 64])
def test_example_nets_cost_what_facegans_cost(size):
    """The reference nets are the same family, so the same FLOP figure serves both."""
    discriminator, generator = build_models(100, 64, size)
    ours = flops.step_flops(generator, discriminator, 100, size)
    example = flops.step_flops(
        reference.ExampleGenerator(100, 64, size),
        reference.ExampleDiscriminator(64, size),
        100,
        size,
    )
    assert example["step_gflop"] == ours["step_gflop"]
    out = reference.ExampleDiscriminator(64, size)(torch.zeros(2, 3, size, size))
    assert out.shape == (2,) and ((out > 0) & (out < 1)).all()  # sigmoid, as BCELoss wants


TINY = [
    "--sizes", "16",
    "--images", "8",
    "--repeats", "1",
    "--batch-size", "8",
    "--conv-dim", "4",
    "--z-size", "8",
    "--workers", "0",
    "--warmup-steps", "1",
    "--device", "cpu",
]  # fmt: skip


def test_a_tiny_run_writes_every_figure(tmp_path, capsys):
    out = tmp_path / "throughput.json"
    result = throughput.main([*TINY, "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    (row,) = result["sizes"]
    assert row["steps_per_repeat"] == 1
    assert row["images_per_s"]["median_a"] > 0 and row["images_per_s"]["median_b"] > 0
    assert row["b_variant"] in row["ablation_b"]
    # The precision auto did not choose is timed too: fp32 beside bf16, or bf16 once.
    if CPU_AUTO_IS_BF16:
        assert any(name.startswith("fp32") for name in row["ablation_b"])
    else:
        assert "bf16 autocast (once)" in row["ablation_b"]
    assert row["celeba_epoch_s"]["b"] == pytest.approx(202_599 / row["images_per_s"]["median_b"])
    assert row["share_of_peak"] is None  # a CPU run has no GPU peak
    for side in ("a", "b"):
        stats = row["loss_check"][side]
        assert stats["steps"] == 2  # one warm-up step and one timed epoch of one batch
        assert all(math.isfinite(stats[k]) for k in ("d_loss", "g_loss", "d_real", "d_fake"))
        assert 0 < stats["d_real"] < 1 and 0 < stats["d_fake"] < 1
    assert {"cpu", "cores", "cpu_flags"} <= set(result["hardware"])
    assert {"torch", "torchvision", "python"} <= set(result["versions"])
    assert len(result["load_average"]["before"]) == 3
    assert result["other_processes_cores"] >= 0
    printed = capsys.readouterr().out
    assert "CelebA epoch" in printed and "n/a (CPU)" in printed and "load average" in printed


def test_b_runs_the_trainer_with_each_variants_own_settings(tmp_path):
    faces = load_faces("synthetic", 16, n_images=16, progress=False)
    settings = throughput.Settings(
        device=torch.device("cpu"), batch_size=8, z_size=8, conv_dim=4, threads=2,
        unused_run_dir=tmp_path / "run",
    )  # fmt: skip
    with restored_threads():
        names = {}
        for variant in throughput.variants_to_time(settings, []):
            run = throughput.FaceganRun(faces, variant, settings)
            assert isinstance(run.trainer, Trainer)
            images, seconds = run.run()
            assert images == 16 and seconds > 0  # one whole epoch: 2 steps of 8
            assert (run.trainer.step, run.trainer.epoch, len(run.stats)) == (2, 1, 2)
            names[run.name] = run.resolved()
    assert not (tmp_path / "run").exists()  # train_steps writes no run folder
    # layout x threads, each a distinct TrainConfig, and fp32 where auto is bf16
    assert len(names) == 4 + CPU_AUTO_IS_BF16
    assert {(r["channels_last"], r["threads"]) for r in names.values()} == {
        (True, 2), (False, 2), (True, 1), (False, 1)
    }  # fmt: skip
    assert not any(r["fused_adam"] for r in names.values())  # CPU: torch's default Adam


def test_the_cuda_variants_run_through_on_the_cpu(tmp_path, monkeypatch):
    """The GPU path, minus the GPU: the CUDA list of variants, the peak and its share."""
    monkeypatch.setattr(throughput, "gpu_name", lambda device: "NVIDIA H200")
    result = throughput.main([*TINY, "--variants", "cuda", "--out", str(tmp_path / "t.json")])
    (row,) = result["sizes"]
    assert result["settings"]["variant_set"] == "cuda"
    assert len(row["ablation_b"]) == 3 and "bf16 autocast (once)" not in row["ablation_b"]
    assert row["peak_bf16_tflops"] == 989.0
    assert row["share_of_peak"]["b"] == pytest.approx(row["gflop_per_s"]["b"] / 989e3)


def test_on_cuda_b_would_use_bf16_both_layouts_and_optionally_compile():
    settings = throughput.Settings(device=torch.device("cuda"), variant_set="cuda", compile=True)
    variants = throughput.variants_to_time(settings, [])
    assert variants[0] == throughput.Variant()  # precision auto: bf16 on a GPU that has it
    assert {v.channels_last for v in variants} == {"auto", "on", "off"}
    assert {v.precision for v in variants} == {"auto", "fp32"}
    assert any(v.compile for v in variants) and not variants[0].compile
    plain = throughput.variants_to_time(
        throughput.Settings(device=torch.device("cuda"), variant_set="cuda"), []
    )
    assert not any(v.compile for v in plain)


def test_peak_is_known_by_device_name_only():
    assert flops.peak_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert flops.peak_bf16_tflops("NVIDIA H200") == 989.0
    assert flops.peak_bf16_tflops("NVIDIA H200 NVL") is None  # a lower-power part
    assert flops.peak_bf16_tflops(None) is None
    row = {"share_of_peak": None}
    assert throughput.peak_share(row, "b", "cuda:0") == "unknown peak"
    assert throughput.peak_share({"share_of_peak": {"b": 0.0123}}, "b", "cuda:0") == "1.2%"


def test_b_trains_the_same_maths_as_the_example(tmp_path):
    """Equal steps from the same seed in fp32: (b)'s loss statistics are comparable to (a)'s,
    and the same check rejects a (b) whose generator never learns."""
    size, batch, steps = 16, 32, 30
    settings = throughput.Settings(
        device=torch.device("cpu"), batch_size=batch, z_size=16, conv_dim=16, workers=0,
        threads=1, unused_run_dir=tmp_path / "run",
    )  # fmt: skip
    root = reference.write_jpegs(tmp_path / "jpegs", 256, size, 0)
    faces = load_faces(root, size, cache_dir=tmp_path / "cache", progress=False)
    facegan = throughput.FaceganRun(faces, throughput.Variant(precision="fp32"), settings)
    frozen = throughput.FaceganRun(faces, throughput.Variant(precision="fp32"), settings)
    for group in frozen.trainer.g_optimizer.param_groups:
        group["lr"] = 0.0
    example = reference.ExampleRun(root, size, **settings.reference_options())
    while len(example.stats) < steps:  # the example's epochs are 8 steps
        example.run(min(steps - len(example.stats), 256 // batch))
    facegan.run(steps)
    frozen.run(steps)
    check = throughput.loss_check(example.stats, facegan.stats)
    assert check["comparable"], check
    assert check["a"]["steps"] == check["b"]["steps"] == steps
    assert throughput.loss_check(example.stats, frozen.stats)["apart"].keys() >= {
        "d_loss", "g_loss", "d_fake"
    }  # fmt: skip


def test_other_processes_cores_leave_out_this_process_and_its_workers():
    # 6 busy CPU seconds in all over 3 s, 3 of them ours: the others kept one core busy.
    assert timing.other_processes_cores((10.0, 2.0), (16.0, 5.0), 3.0) == 1.0
    assert timing.other_processes_cores(None, (16.0, 5.0), 3.0) is None
    busy, own = timing.cpu_seconds()
    assert busy > 0 and own > 0


def test_images_must_be_whole_batches():
    args = throughput.parse_args(["--sizes", "32", "--images", "100"])
    with pytest.raises(SystemExit, match="multiple of 128"):
        throughput.images_per_size(args)


def test_cuda_graph_variants_compile_g_and_d_in_reduce_overhead_mode(tmp_path, monkeypatch):
    """On the CPU, what the graphs variant asks torch.compile for; the GPU test is below."""
    asked = []

    def compile_spy(module, **options):
        asked.append((module, options))
        return module

    monkeypatch.setattr(throughput.torch, "compile", compile_spy)
    faces = load_faces("synthetic", 16, n_images=16, progress=False)
    settings = throughput.Settings(
        device=torch.device("cpu"), batch_size=8, z_size=8, conv_dim=4, threads=1,
        unused_run_dir=tmp_path / "run",
    )  # fmt: skip
    run = throughput.FaceganRun(faces, throughput.Variant(graphs=True), settings)
    trainer = run.trainer
    assert asked == [
        (trainer.discriminator, {"mode": "reduce-overhead"}),
        (trainer.generator, {"mode": "reduce-overhead"}),
    ]
    assert "CUDA graphs" in run.name and "graphs=True" in run.name and run.resolved()["graphs"]
    cuda = throughput.Settings(device=torch.device("cuda"), variant_set="cuda", compile=True)
    assert {v.channels_last for v in throughput.variants_to_time(cuda, []) if v.graphs} == {
        "auto",
        "on",
    }


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_under_cuda_graphs_the_step_computes_the_eager_gradients(tmp_path):
    """D frozen in G's step must stay frozen when G and D replay captured graphs."""
    faces = load_faces("synthetic", 32, n_images=256, progress=False)
    settings = throughput.Settings(
        device=torch.device("cuda"), batch_size=64, unused_run_dir=tmp_path / "run"
    )
    runs = {
        graphs: throughput.FaceganRun(
            faces, throughput.Variant(precision="fp32", graphs=graphs), settings
        )
        for graphs in (False, True)
    }
    for run in runs.values():
        run.run(throughput.GRAPHS_WARMUP_STEPS + 2)
    eager, graphed = (runs[g].trainer for g in (False, True))
    for plain, replayed in ((eager.discriminator, graphed.discriminator),
                            (eager.generator, graphed.generator)):  # fmt: skip
        # Loose enough for kernels that differ in summation order over a few Adam steps;
        # G's gradients leaking into D's would be off by their own size.
        for a, b in zip(plain.parameters(), replayed.parameters(), strict=True):
            torch.testing.assert_close(b.grad, a.grad, atol=1e-3, rtol=1e-2)
            torch.testing.assert_close(b, a, atol=2e-3, rtol=1e-2)
