"""benchmarks/throughput.py: its FLOP counter against a hand count, and a tiny end-to-end run."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from facegan.models import build_models

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"


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


def test_a_tiny_run_writes_every_figure(throughput, tmp_path):
    out = tmp_path / "throughput.json"
    result = throughput.main(
        [
            "--sizes", "16",
            "--images", "8",
            "--repeats", "1",
            "--batch-size", "8",
            "--conv-dim", "4",
            "--z-size", "8",
            "--workers", "0",
            "--warmup-steps", "1",
            "--device", "cpu",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    (row,) = result["sizes"]
    assert row["steps_per_repeat"] == 1
    assert row["images_per_s"]["median_a"] > 0 and row["images_per_s"]["median_b"] > 0
    assert row["b_variant"] in row["ablation_b"]
    assert "bf16 autocast (once)" in row["ablation_b"]
    for side in ("a", "b"):
        stats = row["loss_check"][side]
        assert stats["steps"] == 2  # one warm-up step and one timed epoch of one batch
        assert all(math.isfinite(stats[k]) for k in ("d_loss", "g_loss", "d_real", "d_fake"))
        assert 0 < stats["d_real"] < 1 and 0 < stats["d_fake"] < 1
    assert {"cpu", "cores", "cpu_flags"} <= set(result["hardware"])
    assert {"torch", "torchvision", "python"} <= set(result["versions"])


def test_images_must_be_whole_batches(throughput):
    args = throughput.parse_args(["--sizes", "32", "--images", "100"])
    with pytest.raises(SystemExit, match="multiple of 128"):
        throughput.images_per_size(args)
