"""benchmarks/throughput.py: its FLOP counter against a hand count, and a tiny end-to-end run."""

import contextlib
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from facegan.data import load_faces
from facegan.models import build_models
from facegan.trainer import Trainer

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"


@contextlib.contextmanager
def restored_threads():
    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def throughput():
    spec = importlib.util.spec_from_file_location("throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["throughput"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("throughput", None)


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
def test_flop_counter_matches_a_hand_count(throughput, size):
    discriminator, generator = build_models(100, 64, size)
    flops = throughput.step_flops(generator, discriminator, 100, size)
    g, d = hand_count_macs(64, 100, size)
    assert flops["g_layer_macs"] == g
    assert flops["d_layer_macs"] == d
    assert flops["step_gflop"] == pytest.approx(
        2 * (3 * sum(g) + 9 * sum(d) - g[0] - 2 * d[0]) / 1e9
    )


def test_flop_counts_match_the_published_figures(throughput):
    discriminator, generator = build_models(100, 64, 64)
    flops = throughput.step_flops(generator, discriminator, 100, 64)
    assert flops["g_forward_gflop"] == pytest.approx(0.209, abs=0.001)
    assert flops["d_forward_gflop"] == pytest.approx(0.208, abs=0.001)
    assert flops["step_gflop"] == pytest.approx(2.48, abs=0.01)
    discriminator, generator = build_models(100, 64, 32)
    assert throughput.step_flops(generator, discriminator, 100, 32)["step_gflop"] == (
        pytest.approx(0.42, abs=0.01)
    )


@pytest.mark.parametrize("size", [32, 64])
def test_example_nets_cost_what_facegans_cost(throughput, size):
    """The reference nets are the same family, so the same FLOP figure serves both."""
    discriminator, generator = build_models(100, 64, size)
    ours = throughput.step_flops(generator, discriminator, 100, size)
    example = throughput.step_flops(
        throughput.ExampleGenerator(100, 64, size),
        throughput.ExampleDiscriminator(64, size),
        100,
        size,
    )
    assert example["step_gflop"] == ours["step_gflop"]
    out = throughput.ExampleDiscriminator(64, size)(torch.zeros(2, 3, size, size))
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


def test_a_tiny_run_writes_every_figure(throughput, tmp_path, capsys):
    out = tmp_path / "throughput.json"
    result = throughput.main([*TINY, "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    (row,) = result["sizes"]
    assert row["steps_per_repeat"] == 1
    assert row["images_per_s"]["median_a"] > 0 and row["images_per_s"]["median_b"] > 0
    assert row["b_variant"] in row["ablation_b"]
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


def test_b_runs_the_trainer_with_each_variants_own_settings(throughput, tmp_path):
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
    assert len(names) == 4  # layout x threads, each a distinct TrainConfig
    assert {(r["channels_last"], r["threads"]) for r in names.values()} == {
        (True, 2), (False, 2), (True, 1), (False, 1)
    }  # fmt: skip
    assert not any(r["fused_adam"] for r in names.values())  # CPU: torch's default Adam


def test_the_cuda_variants_run_through_on_the_cpu(throughput, tmp_path, monkeypatch):
    """The GPU path, minus the GPU: the CUDA list of variants, the peak and its share."""
    monkeypatch.setattr(throughput, "gpu_name", lambda device: "NVIDIA H200")
    result = throughput.main([*TINY, "--variants", "cuda", "--out", str(tmp_path / "t.json")])
    (row,) = result["sizes"]
    assert result["settings"]["variant_set"] == "cuda"
    assert len(row["ablation_b"]) == 3 and "bf16 autocast (once)" not in row["ablation_b"]
    assert row["peak_bf16_tflops"] == 989.0
    assert row["share_of_peak"]["b"] == pytest.approx(row["gflop_per_s"]["b"] / 989e3)


def test_on_cuda_b_would_use_bf16_both_layouts_and_optionally_compile(throughput):
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


def test_peak_is_known_by_device_name_only(throughput):
    assert throughput.peak_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert throughput.peak_bf16_tflops("NVIDIA H200") == 989.0
    assert throughput.peak_bf16_tflops("NVIDIA H200 NVL") is None  # a lower-power part
    assert throughput.peak_bf16_tflops(None) is None
    row = {"share_of_peak": None}
    assert throughput.peak_share(row, "b", "cuda:0") == "unknown peak"
    assert throughput.peak_share({"share_of_peak": {"b": 0.0123}}, "b", "cuda:0") == "1.2%"


def test_b_trains_the_same_maths_as_the_example(throughput, tmp_path):
    """Equal steps from the same seed in fp32: (b)'s loss statistics are comparable to (a)'s,
    and the same check rejects a (b) whose generator never learns."""
    size, batch, steps = 16, 32, 30
    settings = throughput.Settings(
        device=torch.device("cpu"), batch_size=batch, z_size=16, conv_dim=16, workers=0,
        threads=1, unused_run_dir=tmp_path / "run",
    )  # fmt: skip
    root = throughput.write_jpegs(tmp_path / "jpegs", 256, size, 0)
    faces = load_faces(root, size, cache_dir=tmp_path / "cache", progress=False)
    facegan = throughput.FaceganRun(faces, throughput.Variant(precision="fp32"), settings)
    frozen = throughput.FaceganRun(faces, throughput.Variant(precision="fp32"), settings)
    for group in frozen.trainer.g_optimizer.param_groups:
        group["lr"] = 0.0
    example = throughput.ExampleRun(root, size, settings)
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


def test_other_processes_cores_leave_out_this_process_and_its_workers(throughput):
    # 6 busy CPU seconds in all over 3 s, 3 of them ours: the others kept one core busy.
    assert throughput.other_processes_cores((10.0, 2.0), (16.0, 5.0), 3.0) == 1.0
    assert throughput.other_processes_cores(None, (16.0, 5.0), 3.0) is None
    busy, own = throughput.cpu_seconds()
    assert busy > 0 and own > 0


def test_images_must_be_whole_batches(throughput):
    args = throughput.parse_args(["--sizes", "32", "--images", "100"])
    with pytest.raises(SystemExit, match="multiple of 128"):
        throughput.images_per_size(args)
