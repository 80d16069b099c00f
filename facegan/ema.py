"""An exponential moving average (EMA) of the generator's weights, for sampling.

G's weights wander from step to step as it chases D; their running average draws smoother,
steadier faces (Yazıcı et al. 2019, "The unusual effectiveness of averaging in GAN
training"). The EMA covers BatchNorm's running statistics too, so that eval-mode
sampling normalises with statistics that match the averaged weights.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Holds `model`, a copy of a model whose weights follow the original's by EMA."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def effective_decay(self, step: int) -> float:
        """The decay at a step: smaller early on, so that the EMA forgets the random init."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Move the EMA towards model's current weights (step counts from 0)."""
        averaged, current = self.model.state_dict(), model.state_dict()
        floats = [name for name, value in current.items() if value.is_floating_point()]
        # One fused update for all weights: this runs after every training step.
        torch._foreach_lerp_(
            [averaged[name] for name in floats],
            [current[name] for name in floats],
            1 - self.effective_decay(step),
        )
        for name in current.keys() - set(floats):  # counters: BatchNorm's num_batches_tracked
            averaged[name].copy_(current[name])
