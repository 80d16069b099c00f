"""Face images as facegan passes them around: sizes, batch checks, uint8 <-> float, grids.

Faces travel in two layouts. Stored and measured faces are uint8 [N, S, S, 3], RGB with the
channels last, as decoded; the networks see float [N, 3, S, S] in [-1, 1], the range of G's
tanh. to_float and to_uint8 convert between them, rounding as a saved PNG does.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from facegan.errors import ConfigError

IMAGE_SIZES = tuple(2**k for k in range(4, 9))
GRID_PADDING = 2  # black pixels around and between the faces of a sample grid


def check_image_size(image_size: object) -> int:
    """image_size as an int, or ConfigError unless it is a power of two from 16 to 256."""
    whole = isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool)
    if not whole or image_size not in IMAGE_SIZES:
        raise ConfigError(
            f"image_size {image_size!r} is not supported: choose a power of two from "
            f"{IMAGE_SIZES[0]} to {IMAGE_SIZES[-1]} ({', '.join(map(str, IMAGE_SIZES))})."
        )
    return int(image_size)


def check_face_images(images: object, what: str = "images", minimum: int = 1) -> None:
    """Raise ConfigError unless images is a uint8 numpy array [N >= minimum, S, S, 3].

    Every measure takes faces in this one layout; what names them in the message.
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        kind = getattr(images, "dtype", type(images).__name__)
        raise ConfigError(
            f"{what} must be a uint8 numpy array of RGB images [N, S, S, 3], got {kind}; "
            "convert generator output in [-1, 1] with facegan.images.to_uint8 first."
        )
    if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
        hint = " (that looks like NCHW: move the channels last)" if images.ndim == 4 else ""
        raise ConfigError(
            f"{what} must be square RGB images shaped [N, S, S, 3], got {images.shape}{hint}."
        )
    if len(images) < minimum:
        count = "one image" if minimum == 1 else f"{minimum} images"
        raise ConfigError(f"{what}: need at least {count}, got {len(images)}.")


def to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 [B, S, S, 3] images (any device) -> contiguous float32 [B, 3, S, S] in [-1, 1]."""
    if batch.dtype != torch.uint8:
        raise TypeError(f"to_float expects uint8 images, got {batch.dtype}")
    return batch.permute(0, 3, 1, 2).contiguous().float().div_(127.5).sub_(1)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator output [N, 3, S, S] in [-1, 1] as uint8 [N, S, S, 3], rounded like a PNG."""
    pixels = images.detach().float().clamp(-1, 1).add(1).mul(127.5).add_(0.5).floor_()
    return pixels.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def save_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int = 8) -> None:
    """Write images [N, 3, S, S] in [-1, 1] as one PNG grid, nrow to a row, 2 px apart.

    The layout and rounding of torchvision's save_image(normalize=True, value_range=(-1, 1)).
    """
    # Imported here: torchvision doubles the start-up time of every command that loads it.
    from torchvision.utils import make_grid

    images = images.detach().float().cpu().clamp(-1, 1).add(1).div(2)
    if len(images) == 1:
        # make_grid hands a lone image back unpadded; a grid of one keeps its border.
        grid = F.pad(images[0], [GRID_PADDING] * 4)
    else:
        grid = make_grid(images, nrow=nrow, padding=GRID_PADDING, pad_value=0.0)
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.numpy()).save(path)
