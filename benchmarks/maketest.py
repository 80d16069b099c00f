"""`make test` on a fresh clone, timed from start to exit.

Run from the repository root:

    python -m benchmarks.maketest [--out benchmarks/results/make-test.json]

Clones HEAD into a temporary folder and runs `make test` there, as CI does: the clone has no
`.venv`, so the time includes creating it from requirements.txt (with pip's cache as this
machine has it). Records the wall-clock time and pytest's own summary: its time and how many
tests passed, were skipped or failed. A failing `make test` records nothing.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.record import REPO, RESULTS, write_results

# pytest's last line, e.g. "==== 722 passed, 3 skipped in 301.33s (0:05:01) ====".
SUMMARY = re.compile(r"=+ (?P<counts>.*?) in (?P<seconds>[\d.]+)s\b")


def pytest_summary(output: str) -> dict:
    """The counts and seconds of the last pytest summary line in output."""
    found = list(SUMMARY.finditer(output))
    if not found:
        raise SystemExit("no pytest summary line in make test's output: nothing recorded")
    last = found[-1]
    counts = {word: int(number) for number, word in re.findall(r"(\d+) (\w+)", last["counts"])}
    return {"counts": counts, "seconds": float(last["seconds"])}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(RESULTS / "make-test.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        clone = Path(folder) / "facegan"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        started = time.perf_counter()
        done = subprocess.run(
            ["make", "test"], cwd=clone, capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - started
    if done.returncode:
        print(done.stdout[-3000:], done.stderr[-3000:])
        raise SystemExit(f"make test failed (exit {done.returncode}): nothing recorded")
    summary = pytest_summary(done.stdout)
    record = write_results(
        Path(args.out),
        {
            "setup": "a fresh clone of HEAD, `.venv` created from scratch (pip's cache warm)",
            "seconds": {"make_test": wall, "pytest": summary["seconds"]},
            "tests": summary["counts"],
        },
    )
    print(f"make test: {wall:.0f} s, pytest {summary['counts']}; wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
