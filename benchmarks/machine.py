"""What the benchmarks say about the machine they ran on, and how they take one core."""

from __future__ import annotations

import os

from facegan.runtime import cpu_info


def pin_to_one_core() -> int | None:
    """Run on a single core so the timing means 'one core' whatever the thread pools do."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def cpu_model() -> str:
    """The CPU's model name, as facegan.runtime reads it."""
    return cpu_info().model
