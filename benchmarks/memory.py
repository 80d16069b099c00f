"""Memory: a 200,000-image set at 64 px trains in far less RAM than its uint8 cache.

Run from the repository root:

    python -m benchmarks.memory [--images 200000] [--size 64] [--distinct 512] [--steps 8]

Builds a cache file as facegan's data cache is laid out (a uint8 [N, S, S, 3] .npy), cheaply:
`--distinct` built-in faces tiled to N images, then drops it from the page cache, as a cache
built by an earlier run would be. A separate process opens it memory-mapped as load_faces
does, builds the Trainer with its defaults over it and trains a few steps. The Trainer draws
batches by index from the map, so only the pages a batch touches are read. Records the cache's
size and the training process's peak RSS, split into its private memory (anonymous: weights,
activations, the allocator) and the file pages it mapped (torch's libraries, and the cache's
pages it read, counted apart), which the kernel can drop at any time.
Writes benchmarks/results/memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.record import REPO, RESULTS, write_results

MIB = 2**20
STATUS_FIELDS = ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem")


def build_cache(path: Path, images: int, size: int, distinct: int) -> float:
    """Write `images` faces as a uint8 .npy, `distinct` built-in faces over and over; seconds."""
    from facegan.synthfaces import render_faces

    started = time.perf_counter()
    faces, _ = render_faces(distinct, size, 0)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(images, size, size, 3))
    for start in range(0, images, distinct):
        stop = min(start + distinct, images)
        out[start:stop] = faces[: stop - start]
    out.flush()
    del out
    with open(path, "rb") as file:  # written out, then out of the page cache
        os.fsync(file.fileno())
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return time.perf_counter() - started


def memory_status() -> dict[str, float]:
    """This process's memory from /proc/self/status, in MiB (empty where there is none)."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {}
    found = {}
    for line in lines:
        key, _, value = line.partition(":")
        if key in STATUS_FIELDS:
            found[key] = int(value.split()[0]) / 1024  # kB
    return found


def resident_mib(path: Path) -> float | None:
    """How much of a file this process has mapped and resident, in MiB (Linux smaps)."""
    try:
        lines = Path("/proc/self/smaps").read_text().splitlines()
    except OSError:
        return None
    total, mapping = 0, None
    for line in lines:
        fields = line.split()
        if not fields[0].endswith(":"):  # a mapping's header: range, perms, ..., path
            mapping = fields[5] if len(fields) > 5 else None
        elif fields[0] == "Rss:" and mapping == str(path):
            total += int(fields[1])  # kB
    return total / 1024


def train_from_cache(path: Path, steps: int) -> dict:
    """In the training process: the Trainer over the mapped cache, a few steps, and its memory."""
    import torch

    from facegan.config import TrainConfig
    from facegan.data import FaceDataset
    from facegan.trainer import Trainer

    images = np.load(path, mmap_mode="r")  # as facegan.data reads its cache
    faces = FaceDataset(images, "tiled built-in faces")
    before = memory_status()
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(TrainConfig(image_size=faces.image_size, out=out), faces)
        started = time.perf_counter()
        trainer.train_steps(steps)
        seconds = time.perf_counter() - started
    return {
        "steps": steps,
        "batch_size": trainer.config.batch_size,
        "seconds": seconds,
        "precision": str(trainer.amp_dtype or torch.float32),
        # The Trainer's images are the map itself, not a copy of it.
        "images_are_mapped": trainer.images.data_ptr() == images.ctypes.data,
        "memory_mib_before_training": before,
        "memory_mib": memory_status(),
        "cache_resident_mib": resident_mib(path),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--distinct", type=int, default=512, help="built-in faces, tiled")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS / "memory.json")
    parser.add_argument("--train", type=Path, help=argparse.SUPPRESS)  # the training process
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.train:
        print(json.dumps(train_from_cache(args.train, args.steps)))
        return {}
    with tempfile.TemporaryDirectory(prefix="facegan-memory-") as tmp:
        cache = Path(tmp) / "faces.npy"
        build_s = build_cache(cache, args.images, args.size, args.distinct)
        cache_mib = cache.stat().st_size / MIB
        command = [sys.executable, "-m", "benchmarks.memory", "--train", str(cache)]
        started = time.perf_counter()
        done = subprocess.run(
            [*command, "--steps", str(args.steps)], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        wall = time.perf_counter() - started
        if done.returncode:
            raise SystemExit("the training process failed; see its output above")
        trained = json.loads(done.stdout.splitlines()[-1])
    # The training process's own high-water mark (VmHWM), read by it at the end.
    peak = trained["memory_mib"]["VmHWM"]
    payload = {
        "dataset": {
            "images": args.images,
            "image_size": args.size,
            "distinct_faces": args.distinct,
            "cache_mib": cache_mib,
            "cache_build_s": build_s,
        },
        "training": trained,
        "process_wall_s": wall,
        "peak_rss_mib": peak,
        "peak_rss_share_of_cache": peak / cache_mib,
        "private_mib_after": trained["memory_mib"].get("RssAnon"),
        "cache_resident_mib": trained["cache_resident_mib"],
    }
    record = write_results(args.out, payload)
    print(
        f"{args.images:,} images at {args.size} px: cache {cache_mib:,.0f} MiB; training process "
        f"peak RSS {peak:,.0f} MiB ({peak / cache_mib:.0%} of the cache), of which private "
        f"{payload['private_mib_after'] or float('nan'):,.0f} MiB after {args.steps} steps; "
        f"cache pages resident {payload['cache_resident_mib'] or float('nan'):,.0f} MiB"
    )
    print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
