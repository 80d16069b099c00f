"""Checkpoints: written atomically, read safely, refused clearly, and older formats converted."""

import errno
import io
import os
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from facegan.checkpoint import (
    CHECKPOINT_FORMAT,
    NoRoomError,
    generator_from_checkpoint,
    load_checkpoint,
    save_atomic,
    write_atomic,
)
from facegan.config import TrainConfig
from facegan.errors import CheckpointError
from facegan.evaluate import best_evaluation
from facegan.history import append_history, last_training_row, read_history, training_rows
from facegan.resume import FIXED_ON_RESUME, FREE_ON_RESUME, check_resume, setting_changes
from facegan.runlock import RunInUseError, RunLock
from facegan.trainer import Trainer
from tests.support import runs
from tests.support.runs import tiny_config

faces = runs.faces  # a fixture: the tiny runs' faces, decoded once a module


def full_disk_after(written: int):
    """A Path.write_bytes that writes `written` bytes, then finds the disk full."""

    def write_bytes(path, data):
        with open(path, "wb") as f:
            f.write(bytes(data)[:written])
        raise OSError(errno.ENOSPC, "No space left on device")

    return write_bytes


def test_a_failed_checkpoint_write_leaves_the_previous_one_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomic({"format": 1, "step": 1}, path)
    size = path.stat().st_size
    monkeypatch.setattr(Path, "write_bytes", full_disk_after(100))
    with pytest.raises(NoRoomError) as refused:
        save_atomic({"format": 1, "step": 2}, path)
    assert str(refused.value) == (
        f"no room to write {path} (No space left on device): the disk holding {tmp_path} is "
        f"full; a checkpoint of this run needs about {max(size / 2**20, 0.1):.1f} MB, and the "
        f"last good checkpoint, {path}, is kept. Free some space (or write to another --out), "
        "then continue with --resume."
    )
    assert torch.load(path, weights_only=True)["step"] == 1
    assert list(tmp_path.iterdir()) == [path]  # the partial last.pt.tmp is gone


def test_a_write_error_other_than_no_room_names_its_own_cause(tmp_path):
    missing = tmp_path / "gone" / "config.json"

    def folder_removed(temp):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")

    with pytest.raises(CheckpointError) as refused:
        write_atomic(missing, folder_removed, checkpoint=tmp_path / "last.pt")
    message = str(refused.value)
    assert message == (
        f"could not write {missing}: No such file or directory (ENOENT); "
        "no checkpoint was saved yet."
    )
    assert not isinstance(refused.value, NoRoomError) and "space" not in message


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
def test_a_failed_history_append_leaves_no_half_row(tmp_path, monkeypatch, code):
    append_history(tmp_path, {"kind": "train", "step": 1})
    before = (tmp_path / "history.jsonl").read_bytes()
    real_write = io.FileIO.write

    class HalfWrite(io.FileIO):
        def write(self, data):
            real_write(self, bytes(data)[:5])
            raise OSError(code, os.strerror(code))

    monkeypatch.setattr("builtins.open", lambda *a, **k: HalfWrite(a[0], "ab"))
    with pytest.raises(NoRoomError, match="history.jsonl"):
        append_history(tmp_path, {"kind": "train", "step": 2})
    monkeypatch.undo()
    assert (tmp_path / "history.jsonl").read_bytes() == before
    assert read_history(tmp_path) == [{"kind": "train", "step": 1}]


def test_the_last_training_row_skips_evaluations_and_changes():
    history = [
        {"kind": "train", "step": 4},
        {"kind": "eval", "step": 4},
        {"kind": "change", "step": 4, "changes": {"epochs": [1, 2]}},
    ]
    assert last_training_row(history) == {"kind": "train", "step": 4}
    assert training_rows(history) == history[:1]
    assert last_training_row(history[1:]) is None


def test_a_run_lock_is_exclusive_names_its_holder_and_leaves_no_file(tmp_path):
    held = RunLock(tmp_path / "run")
    held.acquire()
    assert (tmp_path / "run" / ".lock").read_text() == f"{os.getpid()}\n"
    with pytest.raises(
        RunInUseError, match=f"run is in use by another run \\(process {os.getpid()}\\)"
    ):
        RunLock(tmp_path / "run").acquire()
    held.release()
    assert not (tmp_path / "run" / ".lock").exists()
    again = RunLock(tmp_path / "run")
    again.acquire()
    assert again.held
    again.release()


def test_a_lock_file_removed_under_a_waiting_opener_is_not_trusted(tmp_path, monkeypatch):
    lock = RunLock(tmp_path)
    first_try = []
    real_same_file = RunLock._same_file

    def removed_once(self, file):
        if not first_try:  # as if the last holder removed the file between open and flock
            first_try.append(True)
            return False
        return real_same_file(self, file)

    monkeypatch.setattr(RunLock, "_same_file", removed_once)
    lock.acquire()
    assert first_try and lock.held
    lock.release()


def test_settings_a_resume_may_change_and_those_it_may_not():
    saved = asdict(TrainConfig(out="runs/a", precision="bf16", epochs=10))
    now = asdict(TrainConfig(out="/elsewhere/runs/a", epochs=20, threads=2, lr=1e-3))
    changes = setting_changes(saved, now)
    assert changes == {"epochs": [10, 20], "threads": [0, 2], "lr": [2e-4, 1e-3]}
    with pytest.raises(CheckpointError) as refused:
        check_resume(Path("runs/a"), changes)
    assert str(refused.value).splitlines()[1:2] == ["  lr: 0.0002 -> 0.001"]
    assert "--allow-changes" in str(refused.value)
    check_resume(Path("runs/a"), changes, allow_changes=True)
    check_resume(Path("runs/a"), {"epochs": [10, 20], "device": ["cuda", "cpu"]})
    for fixed in ({"conv_dim": [64, 32]}, {"ema": [0.999, 0.0]}, {"n_samples": [64, 16]}):
        with pytest.raises(CheckpointError, match="fixed by the checkpoint"):
            check_resume(Path("runs/a"), fixed, allow_changes=True)
    check_resume(Path("runs/a"), {"ema": [0.999, 0.99]}, allow_changes=True)


def test_precision_auto_keeps_what_the_run_recorded_and_older_runs_had_no_ema():
    saved = asdict(TrainConfig(precision="bf16"))
    assert setting_changes(saved, saved | {"precision": "auto"}) == {}
    assert setting_changes(saved, saved | {"precision": "fp32"}) == {"precision": ["bf16", "fp32"]}
    older = {k: v for k, v in asdict(TrainConfig(ema=0.0)).items() if k != "ema"}
    assert setting_changes(older, asdict(TrainConfig(ema=0.0))) == {}


def test_the_resume_rule_in_the_docs_names_every_free_and_fixed_setting():
    page = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    free, fixed = page.split("**Free**")[1].split("**Fixed by the checkpoint**")
    fixed = fixed.split("**Everything else**")[0]
    assert all(f"`{name}`" in free for name in FREE_ON_RESUME)
    assert all(f"`{name}`" in fixed for name in FIXED_ON_RESUME)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated"])
def test_unreadable_checkpoints_are_refused_clearly(tmp_path, content):
    path = tmp_path / "last.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(path)


def test_a_truncated_checkpoint_is_refused_clearly(faces, tmp_path):
    trainer = Trainer(tiny_config(tmp_path, epochs=1), faces)
    path = trainer.save_checkpoint()
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(path)


def test_a_checkpoint_of_an_older_format_is_refused_clearly(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format": 1}, path)
    with pytest.raises(CheckpointError, match="format 2 or 3 \\(found format 1\\)"):
        load_checkpoint(path)


def test_sampling_from_a_checkpoint_of_another_architecture_is_a_checkpoint_error(faces, tmp_path):
    path = Trainer(tiny_config(tmp_path, epochs=1), faces).save_checkpoint()
    state = torch.load(path, weights_only=True)
    state["config"]["conv_dim"] = 8
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="conv_dim 8.*not written by facegan"):
        generator_from_checkpoint(path)


def test_a_missing_checkpoint_says_so(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_a_format_2_checkpoint_loads_with_todays_history_names_and_resumes(faces, tmp_path):
    trainer = Trainer(tiny_config(tmp_path, epochs=1), faces)
    trainer.fit(progress=False)
    # Format 2 as facegan wrote it: the same state, but the Haar measure was "face_rate".
    old = trainer.state_dict() | {"format": 2}
    old["history"] = trainer.history + [
        {"kind": "eval", "epoch": 1, "step": 6, "n": 8, "face_rate": 0.25,
         "face_rate_real": 0.5, "face_rate_ratio": 0.5, "main_metric": "face_rate_ratio"},
    ]  # fmt: skip
    torch.save(old, trainer.checkpoint_path)

    state = load_checkpoint(trainer.checkpoint_path)
    assert state["format"] == CHECKPOINT_FORMAT == 3
    assert state["history"][:-1] == trainer.history
    assert state["history"][-1] == {
        "kind": "eval", "epoch": 1, "step": 6, "n": 8, "faces_found": 0.25,
        "faces_found_real": 0.5, "faces_found_ratio": 0.5, "main_metric": "faces_found_ratio",
    }  # fmt: skip
    generator = generator_from_checkpoint(trainer.checkpoint_path)
    assert torch.equal(generator.net[0].weight, trainer.ema_generator.net[0].weight)

    resumed = Trainer(tiny_config(tmp_path, epochs=2), faces)
    resumed.resume()
    assert read_history(tmp_path) == state["history"]
    assert best_evaluation(resumed.history) == state["history"][-1]
    resumed.fit(progress=False)
    assert resumed.epoch == 2 and load_checkpoint(resumed.checkpoint_path)["format"] == 3
