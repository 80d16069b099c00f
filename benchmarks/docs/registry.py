"""The tables by region name. Each reads its results files through Sources and returns Markdown."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.docs.sources import Sources

Table = Callable[[Sources], str]
TABLES: dict[str, Table] = {}
UNLISTED: set[str] = set()  # regions that link their one results file in their own text


def generated(name: str, *, list_sources: bool = True) -> Callable[[Table], Table]:
    """Register a table as the filler of the regions named name."""

    def register(build: Table) -> Table:
        TABLES[name] = build
        if not list_sources:
            UNLISTED.add(name)
        return build

    return register
