"""A run's history.jsonl: one JSON row per logging window, evaluation or change of settings.

A row's "kind" says what it is: "train" (the window's losses, D(x) and D(G(z)); also a row
with no kind), "eval" (the measures), or "change" (settings a resume changed on purpose, at the
step where they take effect).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from facegan.checkpoint import write_error, write_text_atomic


def read_history(run_dir: str | os.PathLike) -> list[dict]:
    """The rows of a run's history.jsonl (empty if there is none yet)."""
    path = Path(run_dir) / "history.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_history(run_dir: str | os.PathLike, rows: list[dict]) -> None:
    """Replace a run's history.jsonl with rows."""
    path = Path(run_dir) / "history.jsonl"
    text = "".join(json.dumps(row) + "\n" for row in rows)
    write_text_atomic(path, text, checkpoint=Path(run_dir) / "checkpoints" / "last.pt")


def append_history(run_dir: str | os.PathLike, row: dict) -> None:
    """Add one row to a run's history.jsonl; a failed write leaves the file as it was."""
    path = Path(run_dir) / "history.jsonl"
    line = (json.dumps(row) + "\n").encode()
    try:
        # Unbuffered, so that a failure shows here and not again when the file closes.
        with open(path, "ab", buffering=0) as f:
            size = f.seek(0, os.SEEK_END)
            try:
                written = 0
                while written < len(line):
                    written += f.write(line[written:])
            except OSError:
                f.truncate(size)  # no half row for the next reader
                raise
    except OSError as err:
        last = Path(run_dir) / "checkpoints" / "last.pt"
        raise write_error(path, err, checkpoint=last) from err


def training_rows(history: list[dict]) -> list[dict]:
    """The training rows of a history (losses, D(x), D(G(z))), without evaluations or changes."""
    return [row for row in history if row.get("kind", "train") == "train"]


def last_training_row(history: list[dict]) -> dict | None:
    """The last training row of a history; None before the first is logged."""
    rows = training_rows(history)
    return rows[-1] if rows else None
