"""A learner's own parts in training: their networks, optimizers, step and z shape.

A notebook may train networks and a step written by hand in place of facegan's. These
functions check that such parts can honour the settings, teach a generator that takes
(N, z_size, 1, 1) to take the flat z every sampler draws, and read a hand-written step's
result as the statistics the history logs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from facegan.config import TrainConfig
from facegan.errors import ConfigError
from facegan.models import Discriminator
from facegan.step import STEP_STATS

# The z a generator takes: flat (N, z_size), or (N, z_size, 1, 1) for one that starts with a
# transposed convolution. Every z is drawn flat; a "4d" generator is taught to take that too.
Z_SHAPES = ("flat", "4d")
StepFunction = Callable[..., dict]


def check_given_parts(
    config: TrainConfig,
    *,
    discriminator: nn.Module | None,
    networks_given: bool,
    optimizers_given: tuple[bool, bool],
    own_step: bool,
    z_shape: str,
) -> None:
    """Raise ConfigError where given networks, optimizers or step cannot honour the config.

    Optimizers come in a pair, over given networks. The recipe's loss, smoothing and
    precision are options of facegan's own step, and its d_norm one of facegan's own
    Discriminator: a learner's step and networks run as written.
    """
    if z_shape not in Z_SHAPES:
        raise ConfigError(f"z_shape {z_shape!r} is unknown: choose one of {Z_SHAPES}.")
    if any(optimizers_given) and not (all(optimizers_given) and networks_given):
        raise ConfigError(
            "given optimizers must come as a pair, over given networks: pass d_optimizer and "
            "g_optimizer together with the discriminator and generator whose parameters they hold."
        )
    ignored = []
    if not own_step:
        ignored += [f"loss {config.loss!r}"] if config.loss != "bce" else []
        ignored += ["smooth"] if config.smooth else []
        ignored += [f"precision {config.precision!r}"] if config.precision == "bf16" else []
    if discriminator is not None:
        norm = discriminator.norm if isinstance(discriminator, Discriminator) else "batch"
        ignored += [f"d_norm {config.d_norm!r}"] if norm != config.d_norm else []
    if ignored:
        raise ConfigError(
            f"{', '.join(ignored)}: the given networks or train_step do not apply it (a "
            "learner's are written for bce in fp32, with BatchNorm in D). Leave these settings "
            "at their defaults, or train with facegan's own networks and step."
        )


def take_flat_z(generator: nn.Module, z_size: int) -> None:
    """Let a generator that takes z as (N, z_size, 1, 1) take flat z (N, z_size) as well.

    Training, the sample grids, evaluation and the notebook's pictures all draw z flat, as
    facegan's own Generator takes it; a forward pre-hook reshapes it on the way in. The
    samplers read z_size from the generator, which it gets where it has none.
    """
    generator.register_forward_pre_hook(_flat_z_as_4d)
    if not hasattr(generator, "z_size"):
        generator.z_size = z_size


def _flat_z_as_4d(_generator: nn.Module, inputs: tuple) -> tuple:
    z, *others = inputs
    return (z[:, :, None, None] if z.dim() == 2 else z, *others)


def given_stats(stats: object, device: torch.device) -> dict[str, torch.Tensor]:
    """A given step's result as STEP_STATS tensors on device; floats (from .item()) too."""
    if not isinstance(stats, dict) or not set(STEP_STATS) <= stats.keys():
        got = sorted(stats) if isinstance(stats, dict) else type(stats).__name__
        raise ConfigError(
            f"the given train_step returned {got}; expected a dict with keys {STEP_STATS}. "
            "Check it with problem_unittests.test_training_step."
        )
    return {
        name: torch.as_tensor(stats[name], device=device).detach().float() for name in STEP_STATS
    }
