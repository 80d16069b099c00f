"""docs/distributed.md's region: plain training against torchrun on the CPU."""

from __future__ import annotations

from benchmarks.docs.formats import speed, table, times
from benchmarks.docs.registry import generated
from benchmarks.docs.sources import Sources


@generated("distributed")
def distributed(sources: Sources) -> str:
    """Plain training against torchrun with one and two processes, one thread each."""
    run = sources["distributed"]
    speedup = run["speedup_over_plain"]
    rows = [
        (setup, speed(images_per_s), times(speedup.get(setup, 1.0)))
        for setup, images_per_s in run["images_per_s"].items()
    ]
    return table(["setup", "images/s", "vs plain"], rows, right=[1, 2])
