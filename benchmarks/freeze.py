"""Benchmark train_step with and without freezing D for G's step, side by side in one process.

Run from the repository root:

    python -m benchmarks.freeze [--sizes 32 64] [--repeats 15 5] [--out FILE]

At each size it builds one DCGAN pair (conv_dim 64, z 100, batch 128, channels_last as the CPU
default) and times train_step in turns: once as it is, once with step.frozen replaced by a
block that freezes nothing, so the two differ in the freeze alone. Prints the medians and their
ratio; writes benchmarks/results/freeze.json (hardware, versions, settings, figures) unless
--out names another file.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
from pathlib import Path
from unittest import mock

import torch

from benchmarks.machine import cpu_model
from benchmarks.record import RESULTS, write_results
from facegan import step as step_module
from facegan.models import build_models

BATCH, Z_SIZE, CONV_DIM = 128, 100, 64


def main() -> None:
    args = parse_args()
    counts = args.repeats if len(args.repeats) > 1 else args.repeats * len(args.sizes)
    figures = {
        f"{size}px": time_size(size, count) for size, count in zip(args.sizes, counts, strict=True)
    }
    result = {
        "hardware": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "torch_threads": torch.get_num_threads(),
        "load_average_before_after": args.load_before + list(os.getloadavg()),
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "settings": {"batch_size": BATCH, "z_size": Z_SIZE, "conv_dim": CONV_DIM},
        "sizes": figures,
    }
    write_results(args.out, result)
    for name, row in figures.items():
        print(
            f"{name}: D frozen in G's step {row['frozen_images_per_s']:.1f} img/s, "
            f"not frozen {row['unfrozen_images_per_s']:.1f} img/s, ratio {row['ratio']:.3f} "
            f"(median of {row['repeats']} steps each, in turns)"
        )
    print(f"wrote {args.out}")


def time_size(size: int, repeats: int) -> dict:
    """Median step time of train_step with and without the freeze, timed in turns."""
    torch.manual_seed(0)
    discriminator, generator = build_models(Z_SIZE, CONV_DIM, size)
    discriminator = discriminator.to(memory_format=torch.channels_last)
    generator = generator.to(memory_format=torch.channels_last)
    optimizers = step_module.make_optimizers(discriminator, generator)
    real = (torch.rand(BATCH, 3, size, size) * 2 - 1).contiguous(memory_format=torch.channels_last)
    z = torch.randn(BATCH, Z_SIZE)

    def step(freeze: bool) -> float:
        # Not frozen: the textbook step, where D also computes its unused weight gradients.
        unfrozen = mock.patch.object(step_module, "frozen", lambda _: contextlib.nullcontext())
        with contextlib.nullcontext() if freeze else unfrozen:
            start = time.perf_counter()
            step_module.train_step(discriminator, generator, *optimizers, real, z)
            return time.perf_counter() - start

    step(True), step(False)  # warm-up: oneDNN builds its kernels on the first steps
    seconds: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeats):
        for freeze in (True, False):
            seconds[freeze].append(step(freeze))
    frozen_s, unfrozen_s = statistics.median(seconds[True]), statistics.median(seconds[False])
    return {
        "repeats": repeats,
        "frozen_images_per_s": BATCH / frozen_s,
        "unfrozen_images_per_s": BATCH / unfrozen_s,
        "ratio": unfrozen_s / frozen_s,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument(
        "--repeats", type=int, nargs="+", default=[15, 5], help="steps per size (one per size)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "freeze.json")
    args = parser.parse_args()
    if len(args.repeats) not in (1, len(args.sizes)):
        parser.error("--repeats takes one count, or one per size")
    args.load_before = list(os.getloadavg())
    return args


if __name__ == "__main__":
    main()
