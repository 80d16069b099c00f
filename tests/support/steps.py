"""The textbook DCGAN step, as the PyTorch example and the course's learners write it."""

import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits as bce


def textbook_step(
    discriminator: nn.Module,
    generator: nn.Module,
    d_optimizer: torch.optim.Optimizer,
    g_optimizer: torch.optim.Optimizer,
    real: torch.Tensor,
    z: torch.Tensor,
) -> dict[str, float]:
    """D on real and detached fakes, then G through D, which keeps computing its own weight
    gradients in G's step (they are cleared before D's next update). Returns floats.

    Positional, as the Trainer calls a given step.
    """
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
    return {
        "d_loss": d_loss.item(),
        "g_loss": g_loss.item(),
        "d_real": d_real.sigmoid().mean().item(),
        "d_fake": d_fake.sigmoid().mean().item(),
    }
