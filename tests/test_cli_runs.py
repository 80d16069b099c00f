"""The run folder through the real program: one run at a time, a killed run resumes at once,
and a full disk stops a run with one line, keeping the last good checkpoint."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

from facegan.checkpoint import load_checkpoint

TINY = [
    *("--image-size", "16", "--n-images", "64", "--batch-size", "16", "--z-size", "8"),
    *("--conv-dim", "4", "--n-samples", "4", "--log-every", "1", "--no-progress"),
]
# A run that saves a checkpoint every step, and is stopped before it ends.
LONG = [*TINY, "--epochs", "40", "--checkpoint-every", "1"]


def start(run: Path, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "facegan", "train", *args, "--out", str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        **popen,
    )


def finish(process: subprocess.Popen) -> tuple[int, str]:
    _, err = process.communicate(timeout=300)
    assert "Traceback" not in err, err
    return process.returncode, err


def lock_holder(run: Path, timeout: float = 120) -> int:
    """The PID in the run folder's lock file, once a run has written it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = (run / ".lock").read_text().strip()
        except FileNotFoundError:
            text = ""
        if text:
            return int(text)
        time.sleep(0.05)
    raise AssertionError(f"no run locked {run} within {timeout} s")


def steps(run: Path) -> list[int]:
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    return [row["step"] for row in rows if row["kind"] == "train"]


def test_of_two_runs_started_at_once_on_one_folder_one_trains_and_one_is_refused(tmp_path):
    run = tmp_path / "run"
    runs = {p.pid: p for p in (start(run, *TINY, "--epochs", "3") for _ in range(2))}
    holder = lock_holder(run)
    os.kill(holder, signal.SIGSTOP)  # the holder waits, lock held, while the other tries
    try:
        (other,) = (p for pid, p in runs.items() if pid != holder)
        code, err = finish(other)
    finally:
        os.kill(holder, signal.SIGCONT)
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        f"error: {run} is in use by another run (process {holder}): wait for it to end or "
        "stop it, or train in another folder (--out)."
    )
    assert finish(runs[holder])[0] == 0
    assert steps(run) == list(range(1, 13))  # one run's rows only, in order
    assert not (run / ".lock").exists()


def test_a_resume_of_a_running_run_is_refused_and_a_killed_run_resumes_at_once(tmp_path):
    run = tmp_path / "run"
    first = start(run, *LONG)
    holder = lock_holder(run)
    while not (run / "checkpoints" / "last.pt").exists():
        time.sleep(0.05)
    first.send_signal(signal.SIGSTOP)  # still running, as far as the resume can tell
    try:
        code, err = finish(start(run, *LONG, "--resume"))
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert code == 2 and f"in use by another run (process {holder})" in err
    assert (run / ".lock").read_text().strip() == str(holder)  # the file stays; the lock not
    code, err = finish(start(run, *TINY, "--epochs", "1", "--resume"))
    assert code == 0, err
    assert not (run / ".lock").exists()


def limit_file_size(limit: int):
    """A preexec_fn: files of at most limit bytes, and a write past it fails with EFBIG."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_no_room_for_a_checkpoint_stops_with_one_line_and_keeps_the_last_good_one(tmp_path):
    run = tmp_path / "run"
    assert finish(start(run, *TINY, "--epochs", "1"))[0] == 0
    checkpoint = run / "checkpoints" / "last.pt"
    size = checkpoint.stat().st_size
    # Room for the history, the grid and config.json, not for a second checkpoint.
    full = start(run, *TINY, "--epochs", "2", "--resume", preexec_fn=limit_file_size(size // 2))
    code, err = finish(full)
    assert code == 2
    line = err.strip().splitlines()[-1]  # after any data-loading progress bar
    assert line.startswith(f"error: no room to write {checkpoint} (File too large)")
    assert f"the disk holding {checkpoint.parent} is full" in line
    assert f"needs about {size / 2**20:.1f} MB" in line
    assert f"the last good checkpoint, {checkpoint}, is kept" in line
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["last.pt"]  # no last.pt.tmp
    assert load_checkpoint(checkpoint)["epoch"] == 1
    assert finish(start(run, *TINY, "--epochs", "2", "--resume"))[0] == 0
    assert load_checkpoint(checkpoint)["epoch"] == 2


def test_no_room_for_the_first_checkpoint_says_none_was_saved(tmp_path):
    run = tmp_path / "run"
    code, err = finish(start(run, *TINY, "--epochs", "1", preexec_fn=limit_file_size(20_000)))
    assert code == 2 and "no checkpoint was saved yet" in err.strip().splitlines()[-1]
    assert list((run / "checkpoints").iterdir()) == []
