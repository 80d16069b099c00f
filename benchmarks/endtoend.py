"""End to end: `python -m facegan train` against the reference recipe, process start to exit.

Run from the repository root:

    python -m benchmarks.endtoend [--jobs 32:10000:2 64:2000:2] [--repeats 1] [--out PATH]

Each job is SIZE:IMAGES:EPOCHS. Its images are built-in faces saved as 64 px JPEGs in the
course layout (as the course's processed CelebA). Both programs train on them from a fresh
start, in turns (a, b, then b, a on the next repeat), each as its own process timed from
start to exit:

(a) `python -m benchmarks.reference`: pytorch/examples dcgan/main.py's recipe (ImageFolder,
    DataLoader with 2 workers, fp32, a Sigmoid D with BCELoss, .item() calls, grids every 100
    steps, nets saved every epoch).
(b) `python -m facegan train` with its defaults and an empty cache, so the run decodes the
    JPEGs into its cache, trains, and writes its grid, history and checkpoint every epoch.

Both use conv_dim 64, z 100 and batch 128. The ratio is (a)'s seconds over (b)'s for the same
images and epochs. Peak RSS is each program's main process (the reference's loader workers
are processes of their own), sampled as it runs. Writes benchmarks/results/endtoend.json,
with the load average and the cores other processes kept busy, since the CPU may be shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.record import REPO, RESULTS, write_results
from benchmarks.reference import write_jpegs
from benchmarks.timing import cpu_seconds, other_processes_cores
from facegan.runtime import cpu_info, native_bf16, precision_name, resolve_precision

JPEG_SIZE = 64  # the course's processed CelebA is 64 px JPEGs
SHARED = {"batch_size": 128, "conv_dim": 64, "z_size": 100, "seed": 0}
DEFAULT_JOBS = ("32:10000:2", "64:2000:2")
TARGET = 2.0  # the ratio wanted on a CPU that computes bf16


@dataclass(frozen=True)
class Job:
    """One training job: image size, images and epochs."""

    size: int
    images: int
    epochs: int

    @classmethod
    def parse(cls, text: str) -> Job:
        try:
            size, images, epochs = (int(part) for part in text.split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not SIZE:IMAGES:EPOCHS") from None
        return cls(size, images, epochs)

    @property
    def name(self) -> str:
        return f"{self.size}px"


def shared_flags() -> list[str]:
    return [f"--{name.replace('_', '-')}={value}" for name, value in SHARED.items()]


def reference_command(root: Path, job: Job, out: Path) -> list[str]:
    """(a): the reference recipe as its own program."""
    return [
        *(sys.executable, "-m", "benchmarks.reference", "--data", str(root)),
        *(f"--image-size={job.size}", f"--epochs={job.epochs}", "--out", str(out)),
        *shared_flags(),
    ]


def facegan_command(root: Path, job: Job, out: Path) -> list[str]:
    """(b): facegan's CLI with its defaults."""
    return [
        *(sys.executable, "-m", "facegan", "train", "--data", str(root)),
        *(f"--image-size={job.size}", f"--epochs={job.epochs}", "--out", str(out)),
        *(*shared_flags(), "--no-progress"),
    ]


def timed_program(command: list[str], env: dict[str, str], log: Path) -> dict:
    """Run command to its exit; its wall seconds and its main process's peak RSS.

    The peak is the kernel's high-water mark (VmHWM) of the program's own process, read as
    it runs. (The resource usage that wait4 reports would also count the RSS this parent had
    when it started the program.)
    """
    started = time.perf_counter()
    peak_kib = 0
    with open(log, "w") as output:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=output)
        while process.poll() is None:
            peak_kib = max(peak_kib, high_water_kib(process.pid))
            time.sleep(0.05)
    seconds = time.perf_counter() - started
    if process.returncode:
        tail = log.read_text()[-2000:]
        raise SystemExit(f"{' '.join(command[1:4])} failed ({process.returncode}):\n{tail}")
    return {"seconds": seconds, "peak_rss_mib": peak_kib / 1024 if peak_kib else None}


def high_water_kib(pid: int) -> int:
    """A process's peak resident memory so far, in KiB (Linux); 0 where it cannot be read."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run_job(job: Job, work: Path, repeats: int) -> dict:
    """(a) and (b) in turns on one job's JPEGs; each from a fresh start."""
    root = write_jpegs(work / f"{job.name}-jpegs", job.images, JPEG_SIZE, SHARED["seed"])
    runs: dict[str, list[dict]] = {"a": [], "b": []}
    for r in range(repeats):
        for side in ("a", "b") if r % 2 == 0 else ("b", "a"):
            out = work / f"{job.name}-{side}{r}"
            env = os.environ | {"FACEGAN_CACHE": str(out / "cache")}  # empty: (b) decodes
            make = reference_command if side == "a" else facegan_command
            runs[side].append(timed_program(make(root, job, out), env, work / f"{side}{r}.log"))
    trained = job.images * job.epochs
    seconds = {side: statistics.median(r["seconds"] for r in rs) for side, rs in runs.items()}
    return {
        "image_size": job.size,
        "images": job.images,
        "epochs": job.epochs,
        "runs": runs,
        "seconds": seconds,
        "images_per_s": {side: trained / s for side, s in seconds.items()},
        "ratio_b_over_a": seconds["a"] / seconds["b"],
        "peak_rss_mib": {
            side: max(r["peak_rss_mib"] or 0 for r in rs) or None for side, rs in runs.items()
        },
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--jobs", type=Job.parse, nargs="+", default=[Job.parse(j) for j in DEFAULT_JOBS]
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs of each side per job")
    parser.add_argument("--out", type=Path, default=RESULTS / "endtoend.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    cpu = torch.device("cpu")
    load_before, busy_before, started = os.getloadavg(), cpu_seconds(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="facegan-endtoend-") as tmp:
        rows = [run_job(job, Path(tmp), args.repeats) for job in args.jobs]
    wall = time.perf_counter() - started
    payload = {
        "cpu": {
            "model": cpu_info().model,
            "native_bf16": native_bf16(cpu),
            "torch_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads(),
        },
        "facegan_precision": precision_name(resolve_precision("auto", cpu)),
        "settings": SHARED | {"jpeg_size": JPEG_SIZE, "repeats": args.repeats},
        "target_ratio": TARGET,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "other_processes_cores": other_processes_cores(busy_before, cpu_seconds(), wall),
        "jobs": rows,
        "runtime_s": wall,
    }
    record = write_results(args.out, payload)
    for row in rows:
        print(
            f"{row['image_size']} px, {row['images']:,} images x {row['epochs']}: reference "
            f"{row['seconds']['a']:.1f} s, facegan {row['seconds']['b']:.1f} s -> "
            f"{row['ratio_b_over_a']:.2f}x; peak RSS {row['peak_rss_mib']['a']:.0f} / "
            f"{row['peak_rss_mib']['b']:.0f} MiB"
        )
    print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
