"""GAN objectives on discriminator logits.

The non-saturating loss of Goodfellow et al.: D learns to call real images 1 and fakes 0,
G learns to make D call its fakes 1. Working on logits with BCEWithLogits is stable in
low precision, where a sigmoid followed by BCELoss is not (and autocast refuses BCELoss).
"""

import torch
from torch.nn import functional as F

SMOOTH_REAL_LABEL = 0.9


def real_loss(d_out: torch.Tensor, smooth: bool = False) -> torch.Tensor:
    """Loss for logits that should say "real"; smooth uses label 0.9 instead of 1."""
    label = SMOOTH_REAL_LABEL if smooth else 1.0
    return F.binary_cross_entropy_with_logits(d_out.float(), torch.full_like(d_out.float(), label))


def fake_loss(d_out: torch.Tensor) -> torch.Tensor:
    """Loss for logits that should say "fake"."""
    return F.binary_cross_entropy_with_logits(d_out.float(), torch.zeros_like(d_out.float()))


def discriminator_loss(
    d_real: torch.Tensor, d_fake: torch.Tensor, smooth: bool = False
) -> torch.Tensor:
    """D's loss: real images towards "real", generated ones towards "fake"."""
    return real_loss(d_real, smooth) + fake_loss(d_fake)


def generator_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """G's non-saturating loss: make D call the fakes real."""
    return real_loss(d_fake)
