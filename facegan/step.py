"""One training step: the discriminator's update, then the generator's with D frozen."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from facegan.losses import discriminator_loss, generator_loss, gradient_penalty

# What every training step returns: D's and G's losses, and D's mean output on real and fake
# images. A step given to the Trainer (a learner's own) returns these too.
STEP_STATS = ("d_loss", "g_loss", "d_real", "d_fake")


def make_optimizers(
    discriminator: nn.Module,
    generator: nn.Module,
    lr: float = 2e-4,
    betas: tuple[float, float] = (0.5, 0.999),
    *,
    fused: bool = False,
) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for each network, with the DCGAN paper's lr 2e-4 and beta1 0.5.

    fused asks for torch's single-kernel Adam, which Trainer does on CUDA only; otherwise
    torch picks its default implementation, so CPU runs and their checkpoints are unchanged.
    """
    kind = {"fused": True} if fused else {}
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=betas, **kind)
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas, **kind)
    return d_optimizer, g_optimizer


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Within the block, module's trainable weights get no gradients; only those are thawed."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)


def train_step(
    discriminator: nn.Module,
    generator: nn.Module,
    d_optimizer: torch.optim.Optimizer,
    g_optimizer: torch.optim.Optimizer,
    real_images: torch.Tensor,
    z: torch.Tensor,
    *,
    smooth: bool = False,
    amp_dtype: torch.dtype | None = None,
    loss: str = "bce",
    gp_weight: float = 10.0,
) -> dict[str, torch.Tensor]:
    """One GAN update: a discriminator step, then a generator step on the same fakes.

    The six positional parameters are the classic course's train_step, which the notebook's
    problem_unittests check calls; the recipe options come by keyword.

    Returns detached scalars d_loss, g_loss, and d_real, d_fake: D's mean output on real and
    fake images before its update (a probability for "bce", the raw score otherwise), plus
    gradient_penalty for "wgan-gp". They stay on the device so that the caller decides when
    to pay for a host sync.
    """
    autocast = torch.autocast(real_images.device.type, amp_dtype, enabled=amp_dtype is not None)
    with autocast:
        fake_images = generator(z)
        d_real = discriminator(real_images)
        # detach: the discriminator's step must not push gradients into the generator.
        d_fake = discriminator(fake_images.detach())
        d_loss = discriminator_loss(d_real, d_fake, smooth, loss)
        if loss == "wgan-gp":
            penalty = gradient_penalty(discriminator, real_images, fake_images)
            d_loss = d_loss + gp_weight * penalty
    d_optimizer.zero_grad(set_to_none=True)
    d_loss.backward()
    d_optimizer.step()

    # G's update needs gradients through D, not D's own weight gradients: freezing D here skips
    # a third of D's backward work in this step (benchmarks/freeze.py times the difference).
    with frozen(discriminator):
        with autocast:  # the forward only: PyTorch advises against backward under autocast
            g_loss = generator_loss(discriminator(fake_images), loss)
        g_optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
    g_optimizer.step()
    d_real, d_fake = d_real.detach().float(), d_fake.detach().float()
    if loss == "bce":  # logits: report D's mean probability
        d_real, d_fake = d_real.sigmoid(), d_fake.sigmoid()
    stats = {
        "d_loss": d_loss.detach(),
        "g_loss": g_loss.detach(),
        "d_real": d_real.mean(),
        "d_fake": d_fake.mean(),
    }
    if loss == "wgan-gp":
        stats["gradient_penalty"] = penalty.detach()
    return stats
