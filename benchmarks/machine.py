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


# The instruction sets that decide facegan's hardware defaults (bf16 precision) and most of a
# CPU's speed, by their /proc/cpuinfo flag, as the docs name them.
NAMED_FEATURES = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_bf16": "AVX512-BF16",
    "amx_tile": "AMX",
}


def cpu_model() -> str:
    """The CPU's model name, as facegan.runtime reads it."""
    return cpu_info().model


def cpu_features() -> list[str]:
    """The NAMED_FEATURES this CPU has, in their order; empty where no flags can be read."""
    flags = cpu_info().flags
    return [name for flag, name in NAMED_FEATURES.items() if flag in flags]
