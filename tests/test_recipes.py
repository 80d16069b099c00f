"""The recipe options: loss objectives, D's normalisation, G's weight average and flips."""

import json
import math

import pytest
import torch
from tiny import tiny_config
from torch import nn

from facegan.data import load_faces
from facegan.ema import WeightAverage
from facegan.errors import CheckpointError, ConfigError
from facegan.losses import LOSSES, discriminator_loss, generator_loss, gradient_penalty
from facegan.models import D_NORMS, Discriminator, build_models
from facegan.train import TrainConfig, Trainer, generator_from_checkpoint, sample_images


@pytest.fixture(scope="module")
def faces():
    return load_faces("synthetic", 16, n_images=96, progress=False)


def flat(module: nn.Module) -> torch.Tensor:
    return torch.cat([v.detach().float().flatten() for v in module.state_dict().values()])


# --- objectives ------------------------------------------------------------------------------


def test_each_loss_prefers_a_discriminator_that_tells_real_from_fake():
    right, wrong = torch.full((8, 1), 3.0), torch.full((8, 1), -3.0)
    for loss in LOSSES:
        good = discriminator_loss(right, wrong, loss=loss)
        bad = discriminator_loss(wrong, right, loss=loss)
        assert good < bad, loss


def test_each_generator_loss_falls_as_d_scores_the_fakes_higher():
    for loss in LOSSES:
        losses = [generator_loss(torch.full((8, 1), score), loss).item() for score in (-2, 0, 1)]
        assert losses[0] > losses[1] > losses[2], (loss, losses)


def test_lsgan_and_hinge_values_by_hand():
    real, fake = torch.tensor([[1.0], [0.0]]), torch.tensor([[0.0], [1.0]])
    # LSGAN: 0.5 * mean((real - 1)^2) + 0.5 * mean(fake^2) = 0.5 * 0.5 + 0.5 * 0.5
    assert discriminator_loss(real, fake, loss="lsgan").item() == pytest.approx(0.5)
    # smoothing moves the real target to 0.9: 0.5 * mean(0.01, 0.81) + 0.25
    smoothed = discriminator_loss(real, fake, smooth=True, loss="lsgan").item()
    assert smoothed == pytest.approx(0.5 * 0.41 + 0.25)
    # hinge: mean(relu(1 - real)) + mean(relu(1 + fake)) = 0.5 + 1.5
    assert discriminator_loss(real, fake, loss="hinge").item() == pytest.approx(2.0)
    assert discriminator_loss(real, fake, loss="wgan-gp").item() == pytest.approx(0.0)
    assert generator_loss(fake, "hinge").item() == pytest.approx(-0.5)


def test_unknown_loss_and_smoothing_without_a_label_are_refused():
    with pytest.raises(ConfigError, match="loss 'wgan' is unknown"):
        generator_loss(torch.zeros(2, 1), "wgan")
    with pytest.raises(ConfigError, match="label smoothing needs"):
        TrainConfig(loss="hinge", smooth=True).validate()
    with pytest.raises(ConfigError, match="BatchNorm in D mixes"):
        TrainConfig(loss="wgan-gp").validate()
    with pytest.raises(ConfigError, match="ema must be a decay"):
        TrainConfig(ema=1.0).validate()
    with pytest.raises(ConfigError, match="d_norm 'layer' is unknown"):
        TrainConfig(d_norm="layer").validate()


def test_gradient_penalty_is_zero_for_a_unit_slope_critic_and_grows_with_the_slope():
    class Linear(nn.Module):
        def __init__(self, slope: float):
            super().__init__()
            self.slope = slope

        def forward(self, images):
            # Gradient of x[:, 0, 0, 0] * slope has norm |slope| for every image.
            return self.slope * images[:, :1, 0, 0]

    real, fake = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    assert gradient_penalty(Linear(1.0), real, fake).item() == pytest.approx(0.0, abs=1e-6)
    assert gradient_penalty(Linear(3.0), real, fake).item() == pytest.approx(4.0)


def test_gradient_penalty_trains_d_through_its_own_gradient():
    discriminator = Discriminator(4, 16, "none")
    penalty = gradient_penalty(discriminator, torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16))
    penalty.backward()
    # Biases shift D's output without changing its slope, so only the weights get a gradient.
    grads = [p.grad for p in discriminator.parameters() if p.ndim > 1]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0


# --- discriminator normalisation -------------------------------------------------------------


def test_every_d_norm_gives_one_logit_per_image_and_only_batch_has_batchnorm():
    for norm in D_NORMS:
        discriminator, _ = build_models(8, 4, 16, norm)
        assert discriminator(torch.randn(3, 3, 16, 16)).shape == (3, 1)
        has_bn = any(isinstance(m, nn.BatchNorm2d) for m in discriminator.modules())
        assert has_bn == (norm == "batch"), norm


def test_spectral_norm_keeps_every_conv_near_unit_norm_after_dcgan_init():
    torch.manual_seed(0)
    discriminator, _ = build_models(8, 8, 16, "spectral")
    # Power iteration converges over forward passes in train mode.
    for _ in range(30):
        discriminator(torch.randn(2, 3, 16, 16))
    for m in discriminator.modules():
        if isinstance(m, nn.Conv2d):
            weight = m.weight.detach().flatten(1)
            assert torch.linalg.matrix_norm(weight, 2).item() == pytest.approx(1.0, rel=0.05)
            stored = m.parametrizations.weight.original.detach()
            assert stored.std().item() == pytest.approx(0.02, rel=0.3)  # the DCGAN init


# --- weight average --------------------------------------------------------------------------


def test_weight_average_follows_its_model_at_the_decay_rate():
    model = nn.Linear(2, 2)
    average = WeightAverage(model, decay=0.9)
    start = flat(average.average)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    average.update(model, step=1000)  # late: the full decay applies
    assert torch.allclose(flat(average.average), start + 0.1, atol=1e-6)
    assert average.effective_decay(0) == pytest.approx(0.1)  # early steps forget the init fast


def test_ema_run_samples_from_the_average_and_the_checkpoint_keeps_it(tmp_path, faces):
    trainer = Trainer(tiny_config(tmp_path / "run", ema=0.9), faces)
    trainer.fit(progress=False)
    assert trainer.sampling_generator is trainer.ema.average
    assert not torch.equal(flat(trainer.generator), flat(trainer.ema.average))
    path = trainer.checkpoint_path
    averaged, live = generator_from_checkpoint(path), generator_from_checkpoint(path, False)
    assert torch.equal(flat(averaged), flat(trainer.ema.average))
    assert torch.equal(flat(live), flat(trainer.generator))
    z = trainer.fixed_z
    assert torch.equal(sample_images(averaged, z), sample_images(trainer.sampling_generator, z))


def test_resume_is_exact_with_every_option_on(tmp_path, faces):
    options = dict(loss="hinge", d_norm="spectral", ema=0.9, flip=True, epochs=3)
    straight = Trainer(tiny_config(tmp_path / "a", **options), faces)
    straight.fit(progress=False)

    first = Trainer(tiny_config(tmp_path / "b", **(options | {"epochs": 1})), faces)
    first.fit(progress=False)
    resumed = Trainer(tiny_config(tmp_path / "b", **options), faces)
    resumed.resume()
    resumed.fit(progress=False)
    for part in ("generator", "discriminator"):
        assert torch.equal(flat(getattr(straight, part)), flat(getattr(resumed, part))), part
    assert torch.equal(flat(straight.ema.average), flat(resumed.ema.average))


def test_resume_refuses_a_changed_d_norm_or_turning_ema_on(tmp_path, faces):
    Trainer(tiny_config(tmp_path / "run", epochs=1, ema=0.0), faces).fit(progress=False)
    for change in ({"d_norm": "spectral", "ema": 0.0}, {"ema": 0.99}):
        trainer = Trainer(tiny_config(tmp_path / "run", **change), faces)
        with pytest.raises(CheckpointError, match="cannot resume"):
            trainer.resume()


# --- flips -----------------------------------------------------------------------------------


def test_flip_mirrors_about_half_of_each_batch_and_nothing_else(tmp_path, faces):
    plain = Trainer(tiny_config(tmp_path / "p"), faces)
    flipped = Trainer(tiny_config(tmp_path / "f", flip=True), faces)
    mirrored = 0
    for a, b in zip(plain._batches(), flipped._batches(), strict=True):
        same = (a == b).flatten(1).all(1)
        mirror = (a.flip(3) == b).flatten(1).all(1)
        assert bool((same | mirror).all())
        mirrored += int((mirror & ~same).sum())
    total = plain.steps_per_epoch * plain.config.batch_size
    assert 0.3 < mirrored / total < 0.7


def test_every_loss_trains_without_diverging(tmp_path, faces):
    for loss, norm in (("bce", "batch"), ("lsgan", "batch"), ("hinge", "spectral")):
        history = Trainer(tiny_config(tmp_path / loss, loss=loss, d_norm=norm), faces).fit(False)
        assert all(math.isfinite(row["d_loss"]) for row in history)
    history = Trainer(tiny_config(tmp_path / "wgan", loss="wgan-gp", d_norm="none"), faces).fit(
        progress=False
    )
    assert all(row["gradient_penalty"] >= 0 for row in history)


def test_the_command_line_passes_every_recipe_option(tmp_path):
    from facegan.__main__ import main

    run = tmp_path / "run"
    tiny = ["--image-size", "16", "--n-images", "32", "--batch-size", "16", "--z-size", "8"]
    tiny += ["--conv-dim", "4", "--epochs", "1", "--no-progress", "--out", str(run)]
    recipe = ["--loss", "hinge", "--d-norm", "spectral", "--ema", "0.9", "--flip"]
    assert main(["train", *tiny, *recipe]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert (saved["loss"], saved["d_norm"], saved["ema"], saved["flip"]) == (
        "hinge",
        "spectral",
        0.9,
        True,
    )
