"""benchmarks/quality.py: its ranking and choice, and a tiny end-to-end run."""

import importlib
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"


@pytest.fixture(scope="module")
def quality():
    # On sys.path, not loaded from its file alone: the study's worker processes are spawned
    # and import the module by name to find run_variant.
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        yield importlib.import_module("quality")
    finally:
        sys.path.remove(str(SCRIPT.parent))
        sys.modules.pop("quality", None)


def result(data: str, variant: str, **metrics) -> dict:
    return {"data": data, "variant": variant, "metrics": metrics}


def test_ranks_follow_each_data_sets_main_metric_and_the_best_mean_rank_wins(quality):
    results = [
        result("synthetic", "vanilla", attribute_kl=0.8, faces_found_ratio=0.9),
        result("synthetic", "ema", attribute_kl=0.5, faces_found_ratio=0.7),
        result("synthetic", "flip", attribute_kl=1.5, faces_found_ratio=0.95),
        result("real.zip", "vanilla", faces_found_ratio=0.8),
        result("real.zip", "ema", faces_found_ratio=0.85),
        result("real.zip", "flip", faces_found_ratio=0.9),
    ]
    ranking = quality.rank(results)
    assert ranking["synthetic"]["metric"] == "attribute_kl"  # lower is better there
    assert ranking["synthetic"]["ranks"] == {"ema": 1, "vanilla": 2, "flip": 3}
    assert ranking["real.zip"]["metric"] == "faces_found_ratio"  # higher is better
    assert ranking["real.zip"]["ranks"] == {"flip": 1, "ema": 2, "vanilla": 3}
    assert quality.choose(ranking)["variant"] == "ema"  # mean rank 1.5


def test_a_tiny_study_runs_end_to_end_and_records_its_settings(quality, tmp_path):
    out = tmp_path / "quality.json"
    record = quality.main(
        ["--budget", "1", "--variants", "vanilla", "--eval-n", "64", "--jobs", "1"]
        + ["--synthetic-n", "256"]
        + ["--out", str(out)]
    )
    saved = json.loads(out.read_text())
    assert saved["choice"]["variant"] == "vanilla" == record["choice"]["variant"]
    (run,) = saved["results"]
    assert run["steps"] >= 1 and run["metrics"]["n"] == 64
    assert "attribute_kl" in run["metrics"] and saved["settings"]["budget_core_seconds"] == 1
