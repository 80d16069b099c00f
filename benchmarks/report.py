"""The default report, run and recorded: `make report`, timed from start to exit.

Run from the repository root, with .venv in place:

    python -m benchmarks.report [--out benchmarks/results/report.json]

Records the run folder that `make report` replaces, runs/report (its settings, steps, every
evaluation and the best one), with the goals the report holds itself to, and copies the
report's pictures into assets/, where the README and docs/measurements.md show them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from benchmarks.record import RESULTS
from benchmarks.runs import record_runs
from helpers import GOALS

COMMAND = "make report"
RUN_DIR = "runs/report"
# The run folder's pictures (the notebook writes them there) and the assets they become.
PICTURES = {
    "final_samples.png": "assets/report_samples.png",
    "loss_curves.png": "assets/report_losses.png",
    "metric_curves.png": "assets/report_metrics.png",
    "epoch_samples.png": "assets/report_progress.png",
}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(RESULTS / "report.json"))
    args = parser.parse_args(argv)
    return record_runs(
        [("default report", RUN_DIR, COMMAND)],
        args.out,
        run_first=True,
        pictures=PICTURES,
        extra={"goals": GOALS},
    )


if __name__ == "__main__":
    main()
