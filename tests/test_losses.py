"""The GAN losses work on logits and point each network the right way."""

import math

import pytest
import torch
from torch import nn

from facegan.config import LOSSES
from facegan.errors import ConfigError
from facegan.losses import (
    discriminator_loss,
    fake_loss,
    generator_loss,
    gradient_penalty,
    real_loss,
)
from facegan.models import Discriminator

CONFIDENT = torch.full((8, 1), 12.0)


def test_real_loss_is_small_when_d_says_real_and_large_when_it_says_fake():
    assert real_loss(CONFIDENT).item() < 1e-4
    assert real_loss(-CONFIDENT).item() == pytest.approx(12.0, abs=1e-3)


def test_fake_loss_is_the_mirror_image():
    assert fake_loss(-CONFIDENT).item() < 1e-4
    assert fake_loss(CONFIDENT).item() == pytest.approx(12.0, abs=1e-3)


def test_undecided_logits_cost_log_two_each():
    zeros = torch.zeros(8, 1)
    assert real_loss(zeros).item() == pytest.approx(math.log(2))
    assert discriminator_loss(zeros, zeros).item() == pytest.approx(2 * math.log(2))


def test_label_smoothing_targets_point_nine():
    smoothed = real_loss(CONFIDENT, smooth=True).item()
    expected = -(0.9 * math.log(torch.sigmoid(torch.tensor(12.0)).item()) + 0.1 * -12.0)
    assert smoothed == pytest.approx(expected, rel=1e-4)
    assert smoothed > real_loss(CONFIDENT).item()


def test_generator_loss_is_non_saturating():
    rejected = torch.full((8, 1), -12.0, requires_grad=True)
    generator_loss(rejected).backward()
    # The saturating loss log(1 - D(G(z))) has a vanishing gradient here; this one does not.
    assert rejected.grad.abs().mean().item() > 0.1


def test_losses_accept_bf16_logits_and_return_fp32():
    assert real_loss(CONFIDENT.bfloat16()).dtype == torch.float32


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


def test_an_unknown_loss_is_refused():
    with pytest.raises(ConfigError, match="loss 'wgan' is unknown"):
        generator_loss(torch.zeros(2, 1), "wgan")


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
