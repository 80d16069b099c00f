"""Timing helpers the speed benchmarks share: thread counts, waits, turns, the machine's load."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import torch


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block starting from `threads` intra-op threads; restore the count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that the clock measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    a: Callable[[], tuple[int, float]], b: Callable[[], tuple[int, float]], repeats: int
) -> dict[str, list[float]]:
    """Run a and b `repeats` times each in turns a b, b a, a b...; images/s of each repeat."""
    figures: dict[str, list[float]] = {"a": [], "b": []}
    for r in range(repeats):
        order = (("a", a), ("b", b)) if r % 2 == 0 else (("b", b), ("a", a))
        for name, run in order:
            count, seconds = run()
            figures[name].append(count / seconds)
    return figures


def cpu_seconds() -> tuple[float, float] | None:
    """CPU seconds used so far by every process (Linux /proc/stat) and by this one with its
    finished children; None where /proc/stat is missing."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    except OSError:
        return None
    ticks = [int(value) for value in fields]
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
    own = os.times()
    return busy, own.user + own.system + own.children_user + own.children_system


def other_processes_cores(before: tuple | None, after: tuple | None, wall_s: float) -> float | None:
    """Cores that other processes kept busy on average between two cpu_seconds() readings."""
    if before is None or after is None:
        return None
    return max(0.0, (after[0] - before[0] - (after[1] - before[1])) / wall_s)
