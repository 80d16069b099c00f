"""One results file per benchmark run, headed by what produced it.

A figure means little without the command, the machine, the torch version and the code that
produced it, so every results file starts with those; `python -m benchmarks.docs` prints them
under each table it generates.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from benchmarks.machine import cpu_features, cpu_model

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PROVENANCE = ("command", "machine", "torch", "commit", "timestamp")


def write_results(path: Path, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Write payload to path as JSON after the command, machine, torch, commit and timestamp."""
    clash = sorted(set(payload) & set(PROVENANCE))
    if clash:
        raise ValueError(f"the payload may not set {clash}: write_results records them itself")
    record = {
        "command": command_line(sys.argv, _main_module()),
        "machine": machine(),
        "torch": torch.__version__,
        "commit": git_commit(REPO),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        **payload,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def command_line(argv: Sequence[str], module: str | None = None) -> str:
    """The command as typed from the repository root, without this machine's folders.

    module is the name given to python -m, if the program was started that way.
    """
    if module:
        program = ["python", "-m", module.removesuffix(".__main__")]
    else:
        script = Path(argv[0]).resolve() if argv else Path("python")
        if script.is_relative_to(REPO):
            script = script.relative_to(REPO)
        program = ["python", script.as_posix()]
    return shlex.join(program + list(argv[1:]))


def _main_module() -> str | None:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec.name if spec is not None else None


def machine() -> dict[str, Any]:
    """CPU model name, its named instruction sets, core count and GPU name (None without one)."""
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
    elif torch.backends.mps.is_available():
        gpu = "Apple MPS"
    else:
        gpu = None
    return {
        "cpu": cpu_model(),
        "cpu_features": cpu_features(),
        "cores": os.cpu_count(),
        "gpu": gpu,
    }


def git_commit(folder: Path) -> str | None:
    """The short hash of HEAD in folder's repository, or None outside git."""
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None
