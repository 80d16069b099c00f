"""Formatting: one rule per kind of figure, so every page prints a kind the same way.

Also the sources list that closes a region: one line for each results file it read.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from benchmarks.docs.sources import Sources

NOT_RECORDED = "not recorded"


def number(value: float, digits: int = 1) -> str:
    # Half up from the shortest decimal form, so 0.9755 prints as 97.6%, as a reader expects.
    exact = Decimal(repr(value)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    return f"{exact:,.{digits}f}"


def percent(share: float, digits: int = 1) -> str:
    return number(share * 100, digits) + "%"


def times(ratio: float) -> str:
    return number(ratio, 2) + "x"


def speed(images_per_s: float) -> str:
    return number(images_per_s, 0 if images_per_s >= 1000 else 1)


def against(value: float, goal: float) -> str:
    return f"{number(value, 2)} (goal {goal})"


def pixels(label: str | int) -> str:
    """A size as results files write it (32 or '32px') as the pages write it: '32 px'."""
    return f"{str(label).removesuffix('px')} px"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{number(seconds)} s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s"
    hours, rest = divmod(round(seconds / 60), 60)
    return f"{hours} h {rest} min"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """A Markdown table; the columns numbered in right are right-aligned."""
    rule = ["---:" if i in right else "---" for i in range(len(header))]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, rule, *rows])


def machine(record: dict[str, Any]) -> str:
    found = record.get("machine") or {}
    cores, gpu = found.get("cores"), found.get("gpu", f"GPU {NOT_RECORDED}")
    cpu = found.get("cpu") or f"CPU {NOT_RECORDED}"
    if found.get("cpu_features"):  # files written before features were recorded have none
        cpu += f" ({', '.join(found['cpu_features'])})"
    return ", ".join(
        [
            cpu,
            f"{cores} cores" if cores else f"cores {NOT_RECORDED}",
            gpu or "no GPU",
        ]
    )


def source_line(sources: Sources, name: str) -> str:
    """One results file as a list item: command, commit, machine, torch, when, and any note."""
    record = sources[name]
    command = record.get("command")
    parts = [
        f"command `{command}`" if command else f"command {NOT_RECORDED}",
        f"commit {record.get('commit') or NOT_RECORDED}",
        machine(record),
        f"torch {record.get('torch') or NOT_RECORDED}",
    ]
    if record.get("timestamp"):
        parts.append(f"run {record['timestamp']}")
    note = record.get("note")
    return (
        f"- {sources.link(name)}: "
        + "; ".join(parts)
        + (f". {note[0].upper()}{note[1:]}." if note else ".")
    )
