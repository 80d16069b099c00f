"""GAN objectives on discriminator outputs.

The default, "bce", is the non-saturating loss of Goodfellow et al.: D learns to call real
images 1 and fakes 0, G learns to make D call its fakes 1. Working on logits with
BCEWithLogits is stable in low precision, where a sigmoid followed by BCELoss is not (and
autocast refuses BCELoss).

The other objectives read D's output as a raw score rather than a logit:

- "lsgan": least squares towards 1 for real and 0 for fake (Mao et al. 2017);
- "hinge": D pushes real scores above 1 and fake ones below -1, G raises its fakes' score
  (Miyato et al. 2018, usually with spectral norm in D);
- "wgan-gp": the Wasserstein critic, D's score gap, plus a gradient penalty on images
  between real and fake (Gulrajani et al. 2017); see gradient_penalty.
"""

import torch
from torch import nn
from torch.nn import functional as F

from facegan.config import check_loss

SMOOTH_REAL_LABEL = 0.9


def real_loss(d_out: torch.Tensor, smooth: bool = False) -> torch.Tensor:
    """Loss for logits that should say "real"; smooth uses label 0.9 instead of 1."""
    label = SMOOTH_REAL_LABEL if smooth else 1.0
    return F.binary_cross_entropy_with_logits(d_out.float(), torch.full_like(d_out.float(), label))


def fake_loss(d_out: torch.Tensor) -> torch.Tensor:
    """Loss for logits that should say "fake"."""
    return F.binary_cross_entropy_with_logits(d_out.float(), torch.zeros_like(d_out.float()))


def discriminator_loss(
    d_real: torch.Tensor, d_fake: torch.Tensor, smooth: bool = False, loss: str = "bce"
) -> torch.Tensor:
    """D's loss under the chosen objective: real images towards "real", fakes towards "fake".

    For "wgan-gp" this is the critic's score gap only; the caller adds gradient_penalty.
    """
    check_loss(loss, smooth)
    real, fake = d_real.float(), d_fake.float()
    if loss == "bce":
        return real_loss(real, smooth) + fake_loss(fake)
    if loss == "lsgan":
        label = SMOOTH_REAL_LABEL if smooth else 1.0
        return 0.5 * ((real - label) ** 2).mean() + 0.5 * (fake**2).mean()
    if loss == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return fake.mean() - real.mean()


def generator_loss(d_fake: torch.Tensor, loss: str = "bce") -> torch.Tensor:
    """G's loss: make D call the fakes real (non-saturating for "bce")."""
    check_loss(loss)
    fake = d_fake.float()
    if loss == "bce":
        return real_loss(fake)
    if loss == "lsgan":
        return 0.5 * ((fake - 1) ** 2).mean()
    # hinge and wgan-gp: raise the fakes' score; the hinge is on D's side only.
    return -fake.mean()


def gradient_penalty(
    discriminator: nn.Module, real_images: torch.Tensor, fake_images: torch.Tensor
) -> torch.Tensor:
    """WGAN-GP's penalty: mean (||grad D(x_hat)|| - 1)^2 at random points between real and fake.

    The graph is kept (create_graph) so that D's step also descends the penalty. Each image
    gets its own gradient, which BatchNorm in D would mix across the batch: use d_norm "none"
    or "spectral" with this loss.
    """
    fake_images = fake_images.detach()
    mix = torch.rand(real_images.shape[0], 1, 1, 1, device=real_images.device)
    between = (mix * real_images.float() + (1 - mix) * fake_images.float()).requires_grad_(True)
    scores = discriminator(between)
    (grads,) = torch.autograd.grad(scores.float().sum(), between, create_graph=True)
    return ((grads.flatten(1).norm(dim=1) - 1) ** 2).mean()
