"""benchmarks.freeze: a tiny end-to-end run times both steps and records them."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FREEZE = [sys.executable, "-m", "benchmarks.freeze"]


def test_a_tiny_run_times_both_steps_and_writes_their_ratio(tmp_path):
    out = tmp_path / "freeze.json"
    command = [*FREEZE, "--sizes", "16", "--repeats", "2", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert record["command"].startswith("python -m benchmarks.freeze --sizes 16")
    row = record["sizes"]["16px"]
    assert row["repeats"] == 2
    assert row["frozen_images_per_s"] > 0 and row["unfrozen_images_per_s"] > 0
    expected = row["frozen_images_per_s"] / row["unfrozen_images_per_s"]
    assert abs(row["ratio"] - expected) < 1e-9
    assert "16px: D frozen in G's step" in result.stdout


def test_repeats_must_be_one_count_or_one_per_size(tmp_path):
    command = [*FREEZE, "--sizes", "16", "32", "64", "--repeats", "1", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 2
    assert "--repeats takes one count, or one per size" in result.stderr
