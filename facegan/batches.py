"""A run's batches: drawn by index from the uint8 images, with no decoding.

On the CPU the images stay the dataset's memory-mapped cache, so a batch reads only the pages
it touches and a set larger than RAM trains; a GPU gets a copy of the whole set. Under torchrun
every rank draws the same global batch and takes its own share of it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import torch

from facegan.distributed import World
from facegan.errors import ConfigError
from facegan.images import to_float


def image_tensor(images: np.ndarray) -> torch.Tensor:
    """A uint8 tensor over a dataset's images, sharing their memory: a memory map stays mapped.

    torch warns that a read-only array (the cache's map) must not be written to through the
    tensor; training only reads it.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        return torch.from_numpy(images)


def batches_per_epoch(n_images: int, batch_size: int) -> int:
    """How many whole batches an epoch of n_images holds; ConfigError if not one."""
    if n_images < batch_size:
        raise ConfigError(
            f"batch_size {batch_size} is larger than the dataset ({n_images} images): "
            "lower --batch-size."
        )
    return n_images // batch_size


def epoch_batches(
    images: torch.Tensor,
    order: torch.Tensor,
    *,
    batch_size: int,
    batches: range,
    world: World,
    flip_rng: torch.Generator | None,
    memory_format: torch.memory_format,
) -> Iterator[torch.Tensor]:
    """This rank's share of the global batches numbered in batches: float NCHW in [-1, 1].

    Batch b holds the images order[b * batch_size : (b + 1) * batch_size]. With flip_rng, each
    image is mirrored left to right with probability 1/2, drawn from flip_rng.
    """
    for b in batches:
        index = world.share(order[b * batch_size : (b + 1) * batch_size]).to(images.device)
        batch = to_float(images[index])
        if flip_rng is not None:
            mirror = world.share(torch.rand(batch_size, generator=flip_rng) < 0.5)
            mirror = mirror.to(images.device).view(-1, 1, 1, 1)
            batch = torch.where(mirror, batch.flip(3), batch)
        yield batch.contiguous(memory_format=memory_format)
