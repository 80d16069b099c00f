"""Benchmark training on the CPU in one process against two under torchrun (gloo).

Run from the repository root:

    python -m benchmarks.distributed [--steps 96] [--image-size 32] [--batch-size 64]
                                     [--conv-dim 32] [--repeats 2]

Each setup trains the same run, through the CLI, at the same global batch, one torch thread
per process: `python -m facegan train --threads 1` (plain: no process group, no wrapper),
`torchrun --nproc-per-node 1` (a world of one: the DDP wrapper and its collectives, nothing to
share) and `torchrun --nproc-per-node 2` (each process half of every batch). The speed is the
median of the run's own images_per_sec rows, the first row (warm-up) left out. The setups take
turns, repeats times, so that a change in the machine's load falls on all of them; the load
average is recorded before and after, as other processes may share the cores. Writes
benchmarks/results/distributed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.record import REPO, RESULTS, write_results

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--rdzv-backend", "c10d"]
TORCHRUN += ["--rdzv-endpoint", "localhost:0"]  # a free port
SETUPS = {
    "plain, 1 process": [sys.executable, "-m", "facegan"],
    "torchrun, 1 process": [*TORCHRUN, "--nproc-per-node", "1", "-m", "facegan"],
    "torchrun, 2 processes": [*TORCHRUN, "--nproc-per-node", "2", "-m", "facegan"],
}
LOG_EVERY = 8


def main() -> None:
    args = parse_args()
    load_before = list(os.getloadavg())
    speeds: dict[str, list[float]] = {name: [] for name in SETUPS}
    for _ in range(args.repeats):
        for name, launcher in SETUPS.items():
            speeds[name].append(train_speed(launcher, args))
    medians = {name: statistics.median(values) for name, values in speeds.items()}
    plain = medians["plain, 1 process"]
    result = {
        "settings": {
            "image_size": args.image_size,
            "batch_size": args.batch_size,
            "conv_dim": args.conv_dim,
            "steps": args.steps,
            "precision": "fp32",
            "threads_per_process": 1,
            "backend": "gloo",
        },
        "load_average_before_after": load_before + list(os.getloadavg()),
        "images_per_s": {name: round(value, 1) for name, value in medians.items()},
        "runs": {name: [round(v, 1) for v in values] for name, values in speeds.items()},
        "speedup_over_plain": {
            name: round(value / plain, 3) for name, value in medians.items() if value != plain
        },
    }
    out = RESULTS / "distributed.json"
    write_results(out, result)
    for name, value in medians.items():
        print(f"{name:<24} {value:8.1f} images/s  ({value / plain:.2f}x plain)")
    print(f"wrote {out.relative_to(REPO)}")


def train_speed(launcher: list[str], args: argparse.Namespace) -> float:
    """Median images per second of one tiny run trained through launcher."""
    steps_per_epoch = 16
    with tempfile.TemporaryDirectory(prefix="facegan-distributed-") as folder:
        run_dir = Path(folder) / "run"
        command = [
            *launcher,
            *("train", "--image-size", str(args.image_size), "--conv-dim", str(args.conv_dim)),
            *("--batch-size", str(args.batch_size), "--precision", "fp32", "--device", "cpu"),
            *("--n-images", str(args.batch_size * steps_per_epoch), "--threads", "1"),
            *("--epochs", str(-(-args.steps // steps_per_epoch)), "--n-samples", "4"),
            *("--log-every", str(LOG_EVERY), "--no-progress", "--out", str(run_dir)),
        ]
        environment = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        subprocess.run(command, cwd=REPO, env=environment, check=True, capture_output=True)
        rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    speeds = [row["images_per_sec"] for row in rows if row["kind"] == "train"]
    return statistics.median(speeds[1:])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=96, help="training steps per run")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64, help="the global batch")
    parser.add_argument("--conv-dim", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="turns of the three setups")
    return parser.parse_args()


if __name__ == "__main__":
    main()
