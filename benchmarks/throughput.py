"""Training throughput: the PyTorch DCGAN example's recipe (a) against facegan's Trainer (b).

Run from the repository root:

    python -m benchmarks.throughput [--sizes 32 64] [--images N [N ...]] [--repeats 3]
                                    [--device auto] [--compile] [--profile STEPS] [--out PATH]

Both sides train on the same JPEG files in one process, timed in turns (a, b, b, a, a, b):
the CPU may be shared, so only ratios of figures measured side by side mean much, and every
figure is the median of the repeats. Warm-up steps are never timed.

(a) pytorch/examples dcgan/main.py, as benchmarks/reference.py rewrites it: ImageFolder over
    the JPEGs with Resize/CenterCrop/ToTensor/Normalize, DataLoader(batch 128, shuffle, 2
    workers), the example's nets (Sigmoid + BCELoss), its weights_init and its loop with five
    .item() calls per step, at torch's default thread count. A repeat is one whole epoch, so
    it includes the workers' start-up and shutdown that every epoch of the example pays. The
    example's image saving every 100 steps and its per-epoch checkpoints are left out, as are
    facegan's.
(b) facegan.trainer.Trainer itself, through Trainer.train_steps: the images decoded once
    (facegan.data.load_faces, timed apart, not in the loop) and held as a uint8 tensor on the
    training device, each batch drawn by index, one host sync per repeat. The variants timed
    are TrainConfig settings (channels_last, threads, precision, compile), side by side; the
    fastest becomes (b). On CUDA the Trainer also uses fused Adam and cuDNN's algorithm search.

FLOPs per image of one training step are counted from the layer shapes (benchmarks/flops.py).
This is the steady state; benchmarks/endtoend.py times whole programs, start to exit.
Writes benchmarks/results/throughput.json (hardware, load average, versions, settings, raw
figures, the projected time of one CelebA epoch, and on CUDA the share of the GPU's peak).
With --profile STEPS it times nothing: it runs torch.profiler over a few steps of (a) and of
each variant of (b) and prints where the time goes.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL
import torch
import torchvision

from benchmarks.flops import peak_bf16_tflops, step_flops
from benchmarks.record import REPO, RESULTS, write_results
from benchmarks.reference import JPEG_QUALITY, ExampleRun, write_jpegs
from benchmarks.timing import (
    cpu_seconds,
    interleaved,
    other_processes_cores,
    synchronize,
    torch_threads,
)
from facegan.config import TrainConfig
from facegan.data import FaceDataset, load_faces
from facegan.models import build_models
from facegan.runtime import cpu_info, resolve_device, resolve_precision
from facegan.trainer import Trainer

# Images per timed repeat. 2,560 at 64 px would take 2-3 min per epoch on the shared 2-core
# machine this was written on (13-18 images/s): these keep `make bench` near 10 min.
DEFAULT_IMAGES = {16: 2048, 32: 2048, 64: 384, 128: 128, 256: 128}
# 2 warm-up steps + 3 repeats x 16 steps = 50 steps at 32 px for the loss check; one warm-up
# step is enough above 32 px, where a step takes seconds.
DEFAULT_WARMUP = {16: 2, 32: 2}
LOSS_WINDOW = 10  # the loss check averages the last this-many steps
# How far apart (a)'s and (b)'s loss check may be: each statistic within its absolute
# tolerance or 15% of the larger value. Same seed, same data and same number of steps still
# leave different inits and batch orders; a (b) whose generator never learns misses these.
LOSS_TOLERANCE = {"d_loss": 0.35, "g_loss": 0.35, "d_real": 0.15, "d_fake": 0.15}
LOSS_RELATIVE = 0.15
HOPELESS = 10.0  # CPU bf16 is dropped when its warm-up step is this many times a fp32 step
CELEBA_IMAGES = 202_599  # the projected epoch: all of CelebA's aligned faces
GRAPHS = {"mode": "reduce-overhead"}  # torch.compile's CUDA graphs
GRAPHS_WARMUP_STEPS = 3
CUDA_ABLATION_STEPS = 20  # a GPU step takes milliseconds: time enough of them
CPU_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx_vnni", "amx_bf16")


# --- (b) facegan ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One set of TrainConfig speed settings for (b); the rest of the config is shared."""

    channels_last: str = "auto"
    threads: int = 0
    precision: str = "auto"
    compile: bool = False
    # CUDA graphs: G and D compiled with mode="reduce-overhead", which replays each captured
    # graph with one launch. A benchmark setting, not yet a TrainConfig one: it is measured
    # first (benchmarks/gpu.sh).
    graphs: bool = False

    def options(self) -> dict:
        """The TrainConfig settings of this variant."""
        return {
            "channels_last": self.channels_last,
            "threads": self.threads,
            "precision": self.precision,
            "compile": self.compile,
        }


class FaceganRun:
    """A facegan Trainer over the decoded images, timed through Trainer.train_steps."""

    def __init__(self, faces: FaceDataset, variant: Variant, settings: Settings) -> None:
        self.variant, self.settings = variant, settings
        config = TrainConfig(
            image_size=faces.image_size,
            batch_size=settings.batch_size,
            z_size=settings.z_size,
            conv_dim=settings.conv_dim,
            seed=settings.seed,
            device=settings.device.type,
            out=str(settings.unused_run_dir),  # train_steps writes nothing
            **variant.options(),
        )
        # Built at the process's default thread count, so that "auto" resolves the same for
        # every variant whatever another variant set before.
        with torch_threads(settings.threads):
            self.trainer = Trainer(config, faces)
        if variant.graphs:
            self.trainer.d_forward = torch.compile(self.trainer.discriminator, **GRAPHS)
            self.trainer.g_forward = torch.compile(self.trainer.generator, **GRAPHS)
        self.name = describe(variant, self.trainer)
        self.stats: list[dict[str, float]] = []

    def resolved(self) -> dict:
        """What the Trainer actually runs with: the settings to check on a GPU."""
        trainer = self.trainer
        return {
            "config": self.variant.options(),
            "amp_dtype": str(trainer.amp_dtype),
            "channels_last": trainer.channels_last,
            "threads": trainer.threads,
            "compile": self.variant.compile,
            "graphs": self.variant.graphs,
            "fused_adam": bool(trainer.d_optimizer.defaults["fused"]),
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "images_on": str(trainer.images.device),
        }

    def run(self, steps: int | None = None) -> tuple[int, float]:
        """Train one epoch (or `steps` steps); returns (images, seconds)."""
        count = steps or self.trainer.steps_per_epoch
        with torch_threads(self.settings.threads):
            start = time.perf_counter()
            self.stats += self.trainer.train_steps(count)  # ends with a host sync
            synchronize(self.settings.device)
            seconds = time.perf_counter() - start
        return count * self.settings.batch_size, seconds


def describe(variant: Variant, trainer: Trainer) -> str:
    """What a variant runs as, then what it asked for: "fp32, NCHW, 1 thread [threads=1]"."""
    parts = [
        "bf16" if trainer.amp_dtype == torch.bfloat16 else "fp32",
        "channels_last" if trainer.channels_last else "NCHW",
    ]
    if trainer.device.type == "cpu":
        parts.append(f"{trainer.threads} thread{'s' * (trainer.threads > 1)}")
    if variant.compile:
        parts.append("compile")
    if variant.graphs:
        parts.append("CUDA graphs")
    defaults = Variant().options()
    asked = [f"{k}={v}" for k, v in variant.options().items() if v != defaults[k]]
    asked += ["graphs=True"] if variant.graphs else []
    return f"{', '.join(parts)} [{' '.join(asked) or 'defaults'}]"


# --- measurement ------------------------------------------------------------------------------


@dataclass
class Settings:
    """What every run shares."""

    device: torch.device
    batch_size: int = 128
    z_size: int = 100
    conv_dim: int = 64
    workers: int = 2
    seed: int = 0
    repeats: int = 3
    warmup_steps: int | None = None  # None: DEFAULT_WARMUP, else 1
    images: dict[int, int] = field(default_factory=dict)
    threads: int = field(default_factory=torch.get_num_threads)  # the process's default
    variant_set: str = "cpu"  # which variants_to_time list: "cpu" or "cuda"
    compile: bool = False  # also time compiled variants
    unused_run_dir: Path = Path("unused-run")

    def reference_options(self) -> dict:
        """What (a), benchmarks.reference.ExampleRun, takes of these settings."""
        names = ("device", "batch_size", "z_size", "conv_dim", "workers", "seed", "threads")
        return {name: getattr(self, name) for name in names}

    def warmup(self, size: int) -> int:
        """Untimed steps before the repeats at this size."""
        return DEFAULT_WARMUP.get(size, 1) if self.warmup_steps is None else self.warmup_steps


def variants_to_time(settings: Settings, leaders: Sequence[Variant]) -> list[Variant]:
    """The TrainConfig settings to time at one size; the first is the defaults.

    On the CPU, the first size tries layout x threads (4 variants), fp32 where auto is bf16,
    and with --compile the compiled defaults; later sizes, where a step costs seconds, the
    defaults and the first size's fastest other variant only. On CUDA:
    precision (auto is bf16) x layout, and with --compile the compiled bf16 pair and the same
    pair under CUDA graphs.
    """
    defaults = Variant()
    if settings.variant_set == "cuda":
        variants = [
            defaults,
            Variant(channels_last="on"),
            Variant(precision="fp32", channels_last="off"),
        ]
        if settings.compile:
            variants += [Variant(compile=True), Variant(channels_last="on", compile=True)]
            variants += [Variant(graphs=True), Variant(channels_last="on", graphs=True)]
        return variants
    if leaders:
        return [defaults, next(v for v in leaders if v != defaults)]
    variants = [defaults, Variant(channels_last="off")]
    if resolve_precision("auto", settings.device) is not None:
        variants.append(Variant(precision="fp32"))
    if settings.threads > 1:
        variants += [Variant(threads=1), Variant(channels_last="off", threads=1)]
    if settings.compile:
        variants.append(Variant(compile=True))
    return variants


def ablation(
    faces: FaceDataset, settings: Settings, leaders: Sequence[Variant]
) -> tuple[list[Variant], dict]:
    """Time (b)'s variants in turns on a few steps each; returns them fastest first.

    On a CPU where auto is fp32, bf16 autocast is timed once at the first size and never
    chosen: without bf16 instructions oneDNN emulates it, many times slower.
    """
    steps = CUDA_ABLATION_STEPS if settings.variant_set == "cuda" else 1 + (faces.image_size <= 32)
    runs, failed = [], {}
    for variant in variants_to_time(settings, leaders):
        run = FaceganRun(faces, variant, settings)
        try:
            # Warm-up: oneDNN builds its kernels, compile its code, on the first step; CUDA
            # graphs are recorded after a few plain runs.
            run.run(GRAPHS_WARMUP_STEPS if variant.graphs else 1)
        except Exception as error:  # a capture that fails is a finding to record, not a crash
            if not variant.graphs:
                raise
            failed[run.name] = {"skipped": f"failed: {type(error).__name__}: {error}"[:300]}
            continue
        runs.append(run)
    table: dict[str, dict] = {
        run.name: {"images_per_s": [], "resolved": run.resolved()} for run in runs
    }
    for r in range(settings.repeats):
        for run in runs[r % len(runs) :] + runs[: r % len(runs)]:  # rotate who goes first
            count, seconds = run.run(steps)
            table[run.name]["images_per_s"].append(count / seconds)
    for row in table.values():
        row["median"] = statistics.median(row["images_per_s"])
        row["steps_per_repeat"] = steps
    ranked = sorted(runs, key=lambda run: -table[run.name]["median"])
    emulated_bf16 = resolve_precision("auto", settings.device) is None
    if settings.variant_set == "cpu" and not leaders and emulated_bf16:
        fp32_step = settings.batch_size / table[runs[0].name]["median"]
        table["bf16 autocast (once)"] = time_bf16_once(faces, settings, fp32_step)
    return [run.variant for run in ranked], table | failed


def time_bf16_once(faces: FaceDataset, settings: Settings, fp32_step_s: float) -> dict:
    """One warm-up step and, unless it is hopeless, two timed steps of bf16 autocast."""
    run = FaceganRun(faces, Variant(precision="bf16"), settings)
    _, warmup = run.run(1)
    row = {"warmup_step_s": warmup, "fp32_step_s": fp32_step_s}
    if warmup > HOPELESS * fp32_step_s:
        row["skipped"] = f"warm-up step took {warmup / fp32_step_s:.0f}x a fp32 step"
        return row
    count, seconds = run.run(2)
    row["images_per_s"] = [count / seconds]
    row["median"] = count / seconds
    return row


def loss_summary(stats: list[dict[str, float]]) -> dict:
    """Mean of each statistic over the last LOSS_WINDOW steps."""
    window = stats[-LOSS_WINDOW:]
    summary = {k: statistics.fmean(s[k] for s in window) for k in window[0]}
    return {"steps": len(stats), "window": len(window), **summary}


def loss_differences(a: dict, b: dict) -> dict[str, float]:
    """The statistics of two loss summaries that are further apart than LOSS_TOLERANCE."""
    apart = {}
    for name, tolerance in LOSS_TOLERANCE.items():
        gap = abs(a[name] - b[name])
        if gap > max(tolerance, LOSS_RELATIVE * max(abs(a[name]), abs(b[name]))):
            apart[name] = gap
    return apart


def fp32_stats(run: FaceganRun, faces: FaceDataset, settings: Settings, steps: int) -> list:
    """(b)'s statistics in fp32 for the loss check: the timed run's own when it was fp32."""
    if run.trainer.amp_dtype is None:
        return run.stats
    check = FaceganRun(faces, Variant(**{**run.variant.options(), "precision": "fp32"}), settings)
    check.run(steps)
    return check.stats


def loss_check(a_stats: list[dict], b_stats: list[dict]) -> dict:
    """Both sides' loss summaries, and whether they are comparable (loss_differences)."""
    a, b = loss_summary(a_stats), loss_summary(b_stats)
    apart = loss_differences(a, b)
    tolerance = {"absolute": LOSS_TOLERANCE, "relative": LOSS_RELATIVE}
    return {"a": a, "b": b, "comparable": not apart, "apart": apart, "tolerance": tolerance}


def measure_size(
    size: int, workdir: Path, settings: Settings, leaders: Sequence[Variant]
) -> tuple[dict, list[Variant]]:
    """Everything at one size: data, ablation, a/b repeats, loss check; and the ranking."""
    count = settings.images[size]
    root = write_jpegs(workdir / f"{size}px", count, size, settings.seed)
    start = time.perf_counter()
    faces = load_faces(root, size, cache_dir=workdir / "cache", progress=False)
    decode_s = time.perf_counter() - start

    ranked, table = ablation(faces, settings, leaders)
    facegan = FaceganRun(faces, ranked[0], settings)
    # Built last: from here on only (a) draws from the global RNG (b has its own generators),
    # so (a)'s init, shuffles and noise all follow from the seed however the runs interleave.
    example = ExampleRun(root, size, **settings.reference_options())
    example.run(settings.warmup(size))
    facegan.run(settings.warmup(size))
    figures = interleaved(example.run, facegan.run, settings.repeats)

    discriminator, generator = build_models(settings.z_size, settings.conv_dim, size)
    flops = step_flops(generator, discriminator, settings.z_size, size)
    ratios = [b / a for a, b in zip(figures["a"], figures["b"], strict=True)]
    medians = {k: statistics.median(v) for k, v in figures.items()}
    peak = peak_bf16_tflops(gpu_name(settings.device))
    gflop_per_s = {k: medians[k] * flops["step_gflop"] for k in ("a", "b")}
    checked = fp32_stats(facegan, faces, settings, len(example.stats))
    row = {
        "image_size": size,
        "images_per_repeat": count,
        "steps_per_repeat": count // settings.batch_size,
        "b_variant": facegan.name,
        "b_resolved": facegan.resolved(),
        "b_decode_once_s": decode_s,
        "images_per_s": {**figures, "median_a": medians["a"], "median_b": medians["b"]},
        "ratio_b_over_a": {"per_repeat": ratios, "median": statistics.median(ratios)},
        "gflop_per_s": gflop_per_s,
        "celeba_epoch_s": {k: CELEBA_IMAGES / medians[k] for k in ("a", "b")},
        "peak_bf16_tflops": peak,
        "share_of_peak": {k: v / (peak * 1e3) for k, v in gflop_per_s.items()} if peak else None,
        "flops": flops,
        "ablation_b": table,
        "loss_check": loss_check(example.stats, checked),
        "peak_gpu_mib": peak_gpu_mib(settings.device),
    }
    return row, ranked


# --- profile ----------------------------------------------------------------------------------


def profile_size(size: int, workdir: Path, settings: Settings, steps: int) -> dict:
    """torch.profiler over `steps` steps of (a) and of each variant of (b), after a warm-up.

    Self times are those of the main process: (a)'s workers show up only as the main process
    waiting in DataLoader.__next__ and as slower kernels when they compete for the cores.
    """
    root = write_jpegs(workdir / f"profile{size}px", (steps + 1) * settings.batch_size, size, 0)
    faces = load_faces(root, size, cache_dir=workdir / "cache", progress=False)
    example = ExampleRun(root, size, **settings.reference_options())
    runs: dict[str, ExampleRun | FaceganRun] = {"(a) example": example}
    for variant in variants_to_time(settings, []):
        run = FaceganRun(faces, variant, settings)
        runs[f"(b) {run.name}"] = run
    result = {}
    for name, run in runs.items():
        run.run(1)
        with torch.profiler.profile() as prof:
            _, seconds = run.run(steps)
        result[name] = {"wall_s_per_step": seconds / steps, "top_ops": top_ops(prof, steps)}
    return result


def top_ops(prof: torch.profiler.profile, steps: int, count: int = 8) -> list[dict]:
    """The ops with the most self CPU time, in ms per step."""
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return [
        {"op": e.key, "calls": e.count, "self_ms_per_step": e.self_cpu_time_total / 1e3 / steps}
        for e in events[:count]
    ]


# --- report -----------------------------------------------------------------------------------


def peak_gpu_mib(device: torch.device) -> float | None:
    """The most GPU memory torch held at once so far in this process; None off CUDA."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def gpu_name(device: torch.device) -> str | None:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else None


def hardware(device: torch.device) -> dict:
    """CPU model, cores, the SIMD flags that matter here, and the GPU if one is used."""
    cpu = cpu_info()
    info = {
        "cpu": cpu.model,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_flags": {flag: flag in cpu.flags for flag in CPU_FLAGS},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = gpu_name(device)
    return info


def versions() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
    }


def duration(seconds: float) -> str:
    """12.3 s, 4.5 min or 2.1 h."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def peak_share(row: dict, side: str, device: str) -> str:
    if not device.startswith("cuda"):
        return "n/a (CPU)"
    if row["share_of_peak"] is None:
        return "unknown peak"
    return f"{100 * row['share_of_peak'][side]:.1f}%"


def print_table(result: dict) -> None:
    hw = result["hardware"]
    load, others = result["load_average"], result["other_processes_cores"]
    shared = "" if others is None else f"; other processes used {others:.2f} cores on average"
    gpu = f", GPU {hw['gpu']}" if "gpu" in hw else ""
    print(
        f"\n{hw['cpu']}, {hw['cores']} cores, {hw['torch_cpu_capability']}, device "
        f"{hw['device']}{gpu}; load average before {load['before'][0]:.2f}, after "
        f"{load['after'][0]:.2f}{shared}"
    )
    print(
        f"batch {result['settings']['batch_size']}, median of {result['settings']['repeats']} "
        "interleaved repeats; (a) = pytorch/examples DCGAN recipe (whole epochs incl. worker "
        "start-up), (b) = facegan Trainer (images decoded once beforehand, not timed)"
    )
    print(
        f"{'size':>5} {'images':>6} {'(a) img/s':>10} {'(b) img/s':>10} {'(b)/(a)':>8} "
        f"{'GFLOP/img':>10} {'(a) GFLOP/s':>12} {'(b) GFLOP/s':>12} "
        f"{'CelebA epoch (a)':>17} {'(b)':>9} {'(b) of peak':>12}  (b) variant"
    )
    for row in result["sizes"]:
        speed, flops, epoch = row["images_per_s"], row["gflop_per_s"], row["celeba_epoch_s"]
        print(
            f"{row['image_size']:>3}px {row['images_per_repeat']:>6} {speed['median_a']:>10.1f} "
            f"{speed['median_b']:>10.1f} {row['ratio_b_over_a']['median']:>8.2f} "
            f"{row['flops']['step_gflop']:>10.3f} {flops['a']:>12.1f} {flops['b']:>12.1f} "
            f"{duration(epoch['a']):>17} {duration(epoch['b']):>9} "
            f"{peak_share(row, 'b', hw['device']):>12}  {row['b_variant']}"
        )
    for row in result["sizes"]:
        flops = row["flops"]
        print(
            f"\n{row['image_size']} px: G fwd {flops['g_forward_gflop']:.3f}, D fwd "
            f"{flops['d_forward_gflop']:.3f}, step {flops['step_gflop']:.3f} GFLOP/image; "
            f"(b) one-time JPEG decode {row['b_decode_once_s']:.2f} s"
        )
        print("  ablation of (b), images/s (median):")
        for name, entry in row["ablation_b"].items():
            shown = f"{entry['median']:.1f}" if "median" in entry else entry.get("skipped")
            print(f"    {name:<36} {shown}")
        checks = row["loss_check"]
        window, steps = checks["a"]["window"], checks["a"]["steps"]
        verdict = "comparable" if checks["comparable"] else f"APART: {checks['apart']}"
        print(f"  loss check, fp32, mean of the last {window} of {steps} steps: {verdict}")
        for side in ("a", "b"):
            s = checks[side]
            print(
                f"    ({side}) D loss {s['d_loss']:.3f}  G loss {s['g_loss']:.3f}  "
                f"D(x) {s['d_real']:.3f}  D(G(z)) {s['d_fake']:.3f}"
            )
    print(f"\nwhole benchmark: {result['runtime_s']:.0f} s")


def print_profile(profile: dict) -> None:
    for size, runs in profile.items():
        for name, data in runs.items():
            print(f"\nprofile {size} px, {name}: {data['wall_s_per_step']:.2f} s per step")
            for op in data["top_ops"]:
                print(f"  {op['self_ms_per_step']:>9.1f} ms/step  {op['calls']:>5}  {op['op']}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument(
        "--images",
        type=int,
        nargs="+",
        help="images per repeat: one for every size, or one per size "
        f"(default {', '.join(f'{s} px: {n}' for s, n in DEFAULT_IMAGES.items())})",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument(
        "--compile", action="store_true", help="also time (b) with compile=True (slow warm-up)"
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="STEPS",
        help="instead of timing, profile STEPS steps of (a) and of each variant of (b) per size",
    )
    default_out = (RESULTS / "throughput.json").relative_to(REPO)
    parser.add_argument("--out", type=Path, help=f"default {default_out}")
    # Smaller settings for the smoke test; the benchmark's figures use the defaults.
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--conv-dim", type=int, default=64)
    parser.add_argument("--z-size", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warmup-steps", type=int, help="default: 2 up to 32 px, else 1")
    parser.add_argument(
        "--variants",
        choices=["device", "cpu", "cuda"],
        default="device",
        help="which list of (b) variants to time: the device's own (default), or another's "
        "(the tests run the CUDA list on the CPU)",
    )
    return parser.parse_args(argv)


def images_per_size(args: argparse.Namespace) -> dict[int, int]:
    """Images per repeat for each size: whole batches, so (a) and (b) take the same steps."""
    given = args.images or [DEFAULT_IMAGES[s] for s in args.sizes]
    if len(given) not in (1, len(args.sizes)):
        raise SystemExit("--images takes one count, or one per size")
    counts = dict(
        zip(args.sizes, given * len(args.sizes) if len(given) == 1 else given, strict=False)
    )
    for size, count in counts.items():
        if count < args.batch_size or count % args.batch_size:
            raise SystemExit(f"--images for {size} px must be a multiple of {args.batch_size}")
    return counts


def make_settings(args: argparse.Namespace, workdir: Path) -> Settings:
    device = resolve_device(args.device)
    own = "cuda" if device.type == "cuda" else "cpu"
    return Settings(
        device=device,
        batch_size=args.batch_size,
        z_size=args.z_size,
        conv_dim=args.conv_dim,
        workers=args.workers,
        repeats=args.repeats,
        warmup_steps=args.warmup_steps,
        images=images_per_size(args),
        variant_set=own if args.variants == "device" else args.variants,
        compile=args.compile,
        unused_run_dir=workdir / "unused-run",
    )


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    # The example turns this on; on the CPU it does nothing, on a GPU it helps both sides.
    torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory(prefix="facegan-throughput-") as tmp:
        settings = make_settings(args, Path(tmp))
        if args.profile:
            return profile_only(args, settings, Path(tmp))
        load_before, cpu_before, measured_from = os.getloadavg(), cpu_seconds(), time.perf_counter()
        rows, leaders = [], []
        for size in args.sizes:
            row, ranked = measure_size(size, Path(tmp), settings, leaders)
            rows.append(row)
            leaders = leaders or ranked
        load_after, cpu_after = os.getloadavg(), cpu_seconds()
        others = other_processes_cores(cpu_before, cpu_after, time.perf_counter() - measured_from)
    result = {
        "hardware": hardware(settings.device),
        "versions": versions(),
        "settings": {
            "sizes": args.sizes,
            "images_per_repeat": settings.images,
            "batch_size": settings.batch_size,
            "repeats": settings.repeats,
            "warmup_steps": {size: settings.warmup(size) for size in args.sizes},
            "z_size": settings.z_size,
            "conv_dim": settings.conv_dim,
            "example_workers": settings.workers,
            "example_threads": settings.threads,
            "seed": settings.seed,
            "jpeg_quality": JPEG_QUALITY,
            "variant_set": settings.variant_set,
            "celeba_images": CELEBA_IMAGES,
            "timed": "(a): whole epochs, from DataLoader iterator creation (worker start-up) to "
            "the last step; (b): whole epochs of Trainer.train_steps (batching by index from "
            "the images held on the device, the step, one host sync at the end). Both exclude "
            "image saving and checkpoints. (b)'s JPEG decode happens once into its cache and "
            "is not in the loop (b_decode_once_s).",
            "loss_check": "same seed, fp32, same JPEGs, same number of steps; init order and "
            "data order differ, so the figures are comparable, not equal",
        },
        "load_average": {"before": load_before, "after": load_after},
        # The load average counts this benchmark too; this is everyone else, on average.
        "other_processes_cores": others,
        "sizes": rows,
        "runtime_s": time.perf_counter() - started,
    }
    out = args.out or RESULTS / "throughput.json"
    record = write_results(out, result)
    print_table(record)
    print(f"wrote {out}")
    return record


def profile_only(args: argparse.Namespace, settings: Settings, workdir: Path) -> dict:
    """The --profile mode: print where each side's time goes; write JSON only to --out."""
    profile = {size: profile_size(size, workdir, settings, args.profile) for size in args.sizes}
    print_profile(profile)
    result = {
        "hardware": hardware(settings.device),
        "load_average": os.getloadavg(),
        "versions": versions(),
        "profile": profile,
    }
    if args.out:
        result = write_results(args.out, result)
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
