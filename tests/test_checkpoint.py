"""Checkpoints: written atomically, read safely, refused clearly, and older formats converted."""

import errno

import pytest
import torch
from tiny import tiny_config

from facegan.checkpoint import (
    CHECKPOINT_FORMAT,
    generator_from_checkpoint,
    load_checkpoint,
    read_history,
    save_atomic,
)
from facegan.data import load_faces
from facegan.errors import CheckpointError
from facegan.evaluate import best_evaluation
from facegan.trainer import Trainer


@pytest.fixture(scope="module")
def faces():
    return load_faces("synthetic", 16, n_images=96, progress=False)


def test_a_failed_checkpoint_write_leaves_the_previous_one_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomic({"format": 1, "step": 1}, path)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device.*untouched"):
        save_atomic({"format": 1, "step": 2}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert list(tmp_path.iterdir()) == [path]


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
