"""Recorded runs: a run folder's settings, steps and evaluations in a results file.

A run may be recorded as it stands (its command is then how it was made, as typed), or run
here first, one after the other, to be timed from start to exit: the reports' budgets are
wall-clock ones. Pictures of the first run can be copied beside the record, for the README and
docs, which then name the commit that drew them.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.record import REPO, git_commit, write_results
from facegan.evaluate import best_evaluation
from facegan.history import read_history, training_rows


def run_timed(command: str) -> float:
    """Run command (as typed, from the repository root) to its end; its wall-clock seconds."""
    started = time.perf_counter()
    done = subprocess.run(shlex.split(command), cwd=REPO, check=False)
    if done.returncode:
        raise SystemExit(f"{command!r} exited with {done.returncode}: nothing recorded")
    return time.perf_counter() - started


def recorded_run(label: str, folder: str, command: str) -> dict[str, Any]:
    """One run folder's settings, steps, evaluations and best evaluation, under label."""
    history = read_history(folder)
    evaluations = [row for row in history if row.get("kind") == "eval"]
    if not evaluations:
        raise SystemExit(f"{folder} holds no evaluation: train it with --eval-every")
    return {
        "label": label,
        "run_command": command,
        "settings": json.loads((Path(folder) / "config.json").read_text()),
        "steps": training_rows(history)[-1]["step"],
        "final": evaluations[-1],
        "best": best_evaluation(history),
        "evaluations": evaluations,
    }


def record_runs(
    runs: Sequence[Sequence[str]],
    out: str,
    grid: str | None = None,
    *,
    run_first: bool = False,
    pictures: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict:
    """Record runs (LABEL, RUN_DIR, COMMAND each) in out, with extra beside them.

    With run_first, each COMMAND is run here first and its wall-clock time recorded as
    wall_seconds. grid receives a copy of the first run's last sample grid; pictures maps files
    of the first run's folder to where they are copied.
    """
    recorded = []
    for label, folder, command in runs:
        wall = {"wall_seconds": run_timed(command)} if run_first else {}
        recorded.append(recorded_run(label, folder, command) | wall)
    copies = dict(pictures or {})
    if grid:
        copies[f"samples/epoch_{recorded[0]['settings']['epochs']:03d}.png"] = grid
    payload: dict[str, Any] = {**(extra or {}), "runs": recorded}
    if copies:
        for source, destination in copies.items():
            shutil.copyfile(Path(runs[0][1]) / source, destination)
        payload["assets"] = {"files": list(copies.values()), "drawn_at_commit": git_commit(REPO)}
    record = write_results(Path(out), payload)
    print(f"wrote {out}")
    return record
