"""The GAN losses work on logits and point each network the right way."""

import math

import pytest
import torch

from facegan.losses import discriminator_loss, fake_loss, generator_loss, real_loss

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
