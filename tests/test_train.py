"""Training: settings are checked, runs are written, and a resumed run is the same run."""

import errno
import json
import os
import signal

import pytest
import torch
from tiny import tiny_config

from facegan.data import load_faces
from facegan.errors import CheckpointError, ConfigError
from facegan.models import build_models
from facegan.train import (
    TrainConfig,
    Trainer,
    TrainingDiverged,
    generator_from_checkpoint,
    load_checkpoint,
    make_optimizers,
    resolve_device,
    resolve_precision,
    sample_images,
    save_atomic,
    save_grid,
    train_step,
)


@pytest.fixture(scope="module")
def faces():
    return load_faces("synthetic", 16, n_images=96, progress=False)


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "images_per_sec"} for row in history]


def parameters(module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.state_dict().values()]).clone()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_size": 48}, "power of two"),
        ({"batch_size": 0}, "batch_size"),
        ({"epochs": -1}, "epochs"),
        ({"device": "tpu"}, "device 'tpu' is unknown"),
        ({"precision": "fp8"}, "precision 'fp8' is unknown"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"n_images": 0}, "n_images"),
        ({"checkpoint_every": -1}, "checkpoint_every must be 0"),
    ],
)
def test_bad_settings_are_refused_before_any_work(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes).validate()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_without_a_gpu_says_what_to_do():
    with pytest.raises(ConfigError, match="no CUDA GPU: use --device auto"):
        resolve_device("cuda")


def test_auto_precision_is_fp32_on_the_cpu():
    assert resolve_precision("auto", torch.device("cpu")) is None
    assert resolve_precision("bf16", torch.device("cpu")) is torch.bfloat16


def test_a_step_updates_both_networks_and_reports_d_outputs():
    torch.manual_seed(0)
    discriminator, generator = build_models(8, 4, 16)
    d_before, g_before = parameters(discriminator), parameters(generator)
    stats = train_step(
        discriminator,
        generator,
        *make_optimizers(discriminator, generator),
        torch.rand(8, 3, 16, 16) * 2 - 1,
        torch.randn(8, 8),
    )
    assert not torch.equal(parameters(discriminator), d_before)
    assert not torch.equal(parameters(generator), g_before)
    assert set(stats) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert 0 < stats["d_real"].item() < 1 and 0 < stats["d_fake"].item() < 1


def textbook_step(discriminator, generator, d_optimizer, g_optimizer, real, z):
    """The DCGAN example's step: D keeps computing its own weight gradients in G's step."""
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    fake = generator(z)
    d_real, d_fake = discriminator(real), discriminator(fake.detach())
    d_loss = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
    d_optimizer.zero_grad()
    d_loss.backward()
    d_optimizer.step()
    d_on_fake = discriminator(fake)
    g_loss = bce(d_on_fake, torch.ones_like(d_on_fake))
    g_optimizer.zero_grad()
    g_loss.backward()
    g_optimizer.step()


@pytest.mark.parametrize("d_norm", ["batch", "spectral"])
def test_freezing_d_in_gs_step_changes_no_update_and_thaws_only_what_was_trainable(d_norm):
    real, z = torch.rand(8, 3, 16, 16) * 2 - 1, torch.randn(8, 8)
    pairs = []
    for step in (train_step, textbook_step):
        torch.manual_seed(0)
        discriminator, generator = build_models(8, 4, 16, d_norm=d_norm)
        optimizers = make_optimizers(discriminator, generator)
        frozen = next(discriminator.parameters())
        frozen.requires_grad_(False)  # a user's frozen layer must stay frozen
        for _ in range(3):
            step(discriminator, generator, *optimizers, real, z)
        assert not frozen.requires_grad
        assert all(p.requires_grad for p in list(discriminator.parameters())[1:])
        pairs.append((parameters(discriminator), parameters(generator)))
    (d_fast, g_fast), (d_textbook, g_textbook) = pairs
    torch.testing.assert_close(g_fast, g_textbook, rtol=0, atol=1e-6)
    torch.testing.assert_close(d_fast, d_textbook, rtol=0, atol=1e-6)


def test_a_run_writes_config_history_samples_and_a_safe_checkpoint(faces, tmp_path):
    history = Trainer(tiny_config(tmp_path), faces).fit(progress=False)
    assert json.loads((tmp_path / "config.json").read_text())["image_size"] == 16
    # 96 images at batch 16 is 6 steps an epoch, logged every 2 steps.
    assert [row["step"] for row in history] == [2, 4, 6, 8, 10, 12]
    assert {"d_loss", "g_loss", "d_real", "d_fake"} <= set(history[0])
    rows = (tmp_path / "history.jsonl").read_text().splitlines()
    assert [json.loads(row) for row in rows] == history
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [
        "epoch_001.png",
        "epoch_002.png",
    ]
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and state["step"] == 12


def test_resume_after_an_epoch_reproduces_the_uninterrupted_run_bitwise(faces, tmp_path):
    straight = Trainer(tiny_config(tmp_path / "straight"), faces)
    straight.fit(progress=False)

    first = Trainer(tiny_config(tmp_path / "split", epochs=1), faces)
    first.fit(progress=False)
    second = Trainer(tiny_config(tmp_path / "split"), faces)
    second.resume()
    second.fit(progress=False)

    assert torch.equal(parameters(second.generator), parameters(straight.generator))
    assert torch.equal(parameters(second.discriminator), parameters(straight.discriminator))
    strip = [{k: v for k, v in row.items() if k != "images_per_sec"} for row in straight.history]
    again = [{k: v for k, v in row.items() if k != "images_per_sec"} for row in second.history]
    assert again == strip


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_mid_epoch_saves_and_resume_matches_the_uninterrupted_run(
    faces, tmp_path, monkeypatch, capsys, stop_signal
):
    straight = Trainer(tiny_config(tmp_path / "straight"), faces)
    straight.fit(progress=False)

    import facegan.train as train_module

    real_step, calls = train_module.train_step, []

    def step_then_signal(*args, **kwargs):
        calls.append(1)
        if len(calls) == 9:  # step 9 is half-way through epoch 2, between log windows
            os.kill(os.getpid(), stop_signal)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", step_then_signal)
    first = Trainer(tiny_config(tmp_path / "split"), faces)
    first.fit(progress=False)
    assert f"Stopped by {stop_signal.name} at step 9" in capsys.readouterr().out
    monkeypatch.setattr(train_module, "train_step", real_step)

    second = Trainer(tiny_config(tmp_path / "split"), faces)
    second.resume()
    assert (second.epoch, second.batch_in_epoch, second.step) == (1, 3, 9)
    second.fit(progress=False)
    assert torch.equal(parameters(second.generator), parameters(straight.generator))
    assert torch.equal(parameters(second.discriminator), parameters(straight.discriminator))
    assert without_timing(second.history) == without_timing(straight.history)


def test_a_finished_run_is_not_overwritten_without_resume(faces, tmp_path):
    Trainer(tiny_config(tmp_path, epochs=1), faces).fit(progress=False)
    before = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run"):
        Trainer(tiny_config(tmp_path, epochs=1), faces).fit(progress=False)
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == before


def test_resume_with_another_architecture_names_what_differs(faces, tmp_path):
    Trainer(tiny_config(tmp_path, epochs=1), faces).fit(progress=False)
    with pytest.raises(CheckpointError, match="conv_dim: checkpoint 4, now 8"):
        Trainer(tiny_config(tmp_path, conv_dim=8), faces).resume()


def test_resume_with_another_image_size_names_what_differs(faces, tmp_path):
    Trainer(tiny_config(tmp_path, epochs=1), faces).fit(progress=False)
    larger = load_faces("synthetic", 32, n_images=32, progress=False)
    with pytest.raises(CheckpointError, match="image_size: checkpoint 16, now 32"):
        Trainer(tiny_config(tmp_path, image_size=32), larger).resume()


def test_checkpoint_every_also_saves_mid_epoch(faces, tmp_path, monkeypatch):
    import facegan.train as train_module

    saved_steps = []
    monkeypatch.setattr(train_module, "save_atomic", lambda state, _: saved_steps.append(state))
    Trainer(tiny_config(tmp_path, checkpoint_every=4), faces).fit(progress=False)
    # 6 steps an epoch: every 4th step, and each epoch end.
    assert [(s["step"], s["epoch"], s["batch_in_epoch"]) for s in saved_steps] == [
        (4, 0, 4),
        (6, 1, 0),
        (8, 1, 2),
        (12, 2, 0),
    ]


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(
    faces, tmp_path, monkeypatch
):
    Trainer(tiny_config(tmp_path, epochs=1), faces).fit(progress=False)
    good = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    import facegan.train as train_module

    def exploding_step(*args, **kwargs):
        stats = real_step(*args, **kwargs)
        return stats | {"d_loss": torch.tensor(float("nan"))}

    real_step = train_module.train_step
    monkeypatch.setattr(train_module, "train_step", exploding_step)
    trainer = Trainer(tiny_config(tmp_path), faces)
    trainer.resume()
    with pytest.raises(TrainingDiverged, match="non-finite by step 8.*left untouched"):
        trainer.fit(progress=False)
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == good


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
    with pytest.raises(CheckpointError, match="format 2 \\(found format 1\\)"):
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


def test_sampling_uses_eval_mode_so_a_face_depends_only_on_its_own_z(faces, tmp_path):
    trainer = Trainer(tiny_config(tmp_path, epochs=1), faces)
    trainer.fit(progress=False)
    z = torch.randn(6, 8)
    alone = sample_images(trainer.generator, z[:1])
    together = sample_images(trainer.generator, z)
    torch.testing.assert_close(alone[0], together[0])
    assert trainer.generator.training

    loaded = generator_from_checkpoint(trainer.checkpoint_path)  # the weight average (ema)
    torch.testing.assert_close(
        sample_images(loaded, z), sample_images(trainer.sampling_generator, z)
    )


@pytest.mark.parametrize("count", [4, 9, 64])
def test_sample_grids_are_torchvisions_save_image_to_the_byte(tmp_path, count):
    from torchvision.utils import save_image

    images = torch.randn(count, 3, 16, 16, generator=torch.Generator().manual_seed(count)) * 1.5
    save_image(images, tmp_path / "torchvision.png", normalize=True, value_range=(-1, 1))
    save_grid(images, tmp_path / "facegan.png")
    assert (tmp_path / "facegan.png").read_bytes() == (tmp_path / "torchvision.png").read_bytes()
