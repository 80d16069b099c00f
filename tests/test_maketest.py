"""benchmarks/maketest.py: what it reads from make test's output."""

import pytest

from benchmarks.maketest import pytest_summary


def test_the_last_pytest_summary_line_gives_the_counts_by_kind_and_the_seconds():
    output = (
        "== 1 failed in 0.5s ==\n"  # an earlier pytest run in the same output is not the one
        "tests/test_x.py ....s\n"
        "================== 722 passed, 3 skipped in 301.33s (0:05:01) ==================\n"
    )
    assert pytest_summary(output) == {"counts": {"passed": 722, "skipped": 3}, "seconds": 301.33}


def test_output_without_a_summary_records_nothing():
    with pytest.raises(SystemExit, match="no pytest summary line"):
        pytest_summary("ruff: All checks passed!\nmake: *** [test] Error 1\n")
