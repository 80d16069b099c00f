"""Measures of generated faces on dlib's pretrained face descriptors, offline.

dlib's face-recognition ResNet (dlib_face_recognition_resnet_model_v1.dat, shipped by the PyPI
package face-recognition-models) maps a 150x150 face chip to a 128-d descriptor. The network is
rebuilt here in torch and loads the shipped weights (read by facegan.dlibweights), so it runs
batched on every core, on a GPU and in bf16; its descriptors match dlib's own
(tests/test_faceid.py checks them against dlib).

The protocol is fixed and versioned (PROTOCOL_VERSION), as FID's is:

- Images are uint8 RGB [N, S, S, 3], S a power of two from 16 to 256, real and generated alike.
- Each image is resized whole to INPUT_SIZE x INPUT_SIZE (no detection or alignment), bilinear
  with antialiasing, and rounded to uint8: the chip dlib itself would be given.
- Descriptors: the 128-d output of dlib's network, not normalised (dlib does not normalise).
- N: the first DEFAULT_N generated images against the first DEFAULT_N reference images. An
  evaluation with fewer faces at hand measures at a smaller N (evaluation_n, at least MIN_N)
  and records it as face_n: figures compare only at one N.
- The real floor (facegan.evaluate): the next N real images, disjoint from the reference,
  measured against the reference exactly as generated images are.
- face_distance: the Fréchet distance between Gaussians fitted to the two descriptor sets.
- face_precision and face_recall: improved precision and recall (Kynkäänniemi et al. 2019) with
  k = NEIGHBOURS: the share of generated faces inside the real faces' k-NN manifold, and the
  share of real faces inside the generated faces' manifold.
- Reference descriptors are computed once per data set and cached under cache_root(), keyed by
  the caller's data set key, image size, N and PROTOCOL_VERSION.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facegan.dlibweights import CACHE_FOLDER, EXTRACTOR_NAME, LEVELS, load_weights, model_path
from facegan.errors import ConfigError
from facegan.fid import frechet_distance
from facegan.images import check_face_images, check_image_size
from facegan.refcache import extractor_name, read_arrays, reference_meta, write_arrays

# The protocol. Bump PROTOCOL_VERSION whenever a choice below changes: cached reference
# descriptors are keyed on it, so old ones are not mixed with new.
PROTOCOL_VERSION = "1"
INPUT_SIZE = 150
RESIZE_FILTER = "bilinear-antialias-uint8"
DEFAULT_N = 1000
NEIGHBOURS = 3
DESCRIPTOR_SIZE = 128
BATCH_SIZE = 50
# The fewest faces a side that the measures accept: k-NN radii need more than NEIGHBOURS
# points, and fewer faces than this give figures too noisy to rank anything by.
MIN_N = 50


# The network ------------------------------------------------------------------------------


def _add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b as dlib's add_prev adds: the larger shape, missing entries read as zero.

    A downsampling block's shortcut has fewer channels than its output, and at 4x4 -> 2x2 the
    shortcut's average pool keeps a row and column that the 3x3 stride-2 convolution drops.
    """
    channels, height, width = (max(x, y) for x, y in zip(a.shape[1:], b.shape[1:], strict=True))

    def grow(x: torch.Tensor) -> torch.Tensor:
        c, h, w = x.shape[1:]
        return F.pad(x, (0, width - w, 0, height - h, 0, channels - c))

    return grow(a) + grow(b)


class ResidualBlock(nn.Module):
    """relu(shortcut + conv(relu(conv(x)))), each conv with its affine folded in.

    A downsampling block's first conv has stride 2 and no padding (dlib pads only stride-1
    convolutions), and its shortcut is a 2x2 average pool.
    """

    def __init__(self, in_channels: int, channels: int, downsample: bool) -> None:
        super().__init__()
        stride, padding = (2, 0) if downsample else (1, 1)
        self.downsample = downsample
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, padding)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.conv2(F.relu(self.conv1(x)))
        shortcut = F.avg_pool2d(x, 2) if self.downsample else x
        return F.relu(_add_zero_padded(residual, shortcut))


class FaceDescriptorNet(nn.Module):
    """dlib's face-recognition ResNet: uint8-valued RGB [N, 3, 150, 150] -> descriptors [N, 128]."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(3))
        self.stem = nn.Conv2d(3, 32, 7, 2, 0)
        blocks = []
        in_channels = 32
        for level, (channels, count) in enumerate(LEVELS):
            for index in range(count):
                blocks.append(ResidualBlock(in_channels, channels, level > 0 and index == 0))
                in_channels = channels
        self.blocks = nn.Sequential(*blocks)
        self.project = nn.Linear(256, DESCRIPTOR_SIZE, bias=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        # dlib's input layer: subtract the per-channel mean, then divide by 256.
        x = (pixels - self.mean.to(pixels.dtype)[None, :, None, None]) / 256
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        x = self.blocks(x)
        return self.project(x.mean(dim=(2, 3)))


def resize_to_chips(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, S, S, 3] -> the protocol's chips, uint8-valued float [N, 3, 150, 150]."""
    pixels = torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).float()
    chips = F.interpolate(
        pixels, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True, align_corners=False
    )
    return chips.round_().clamp_(0, 255)


class FaceDescriptors:
    """The descriptor extractor: uint8 images [N, S, S, 3] -> float64 descriptors [N, 128]."""

    name = EXTRACTOR_NAME

    def __init__(
        self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        net = FaceDescriptorNet()
        net.load_state_dict(load_weights())
        self.net = net.eval().to(self.device, dtype)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        _check_images(images, "images")
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), BATCH_SIZE):
                chips = resize_to_chips(images[start : start + BATCH_SIZE])
                chips = chips.to(self.device, self.dtype, memory_format=torch.channels_last)
                out.append(self.net(chips).double().cpu())
        return torch.cat(out).numpy()


@cache
def default_extractor() -> FaceDescriptors:
    """The fp32 CPU extractor, built once per process."""
    return FaceDescriptors()


# The measures -----------------------------------------------------------------------------


def _check_images(images: object, what: str) -> None:
    check_face_images(images, what)
    check_image_size(images.shape[1])


def _check_count(images: np.ndarray, n: int, what: str) -> None:
    if len(images) < n:
        raise ConfigError(
            f"the face measures use N = {n} {what} images but got {len(images)}; give at "
            f"least {n} {what} images, or pass n={len(images)} (numbers are comparable only "
            f"at one N; the protocol's is {DEFAULT_N})."
        )


def evaluation_n(generated: int, real: int) -> int:
    """The N an evaluation measures at: DEFAULT_N, or fewer when fewer faces are at hand.

    The real set gives two disjoint N: the reference, and the held-out faces of the real floor.
    """
    n = min(DEFAULT_N, generated, real // 2)
    if n < MIN_N:
        raise ConfigError(
            f"the face measures need at least {MIN_N} generated faces and {2 * MIN_N} real ones "
            f"(N for the reference and N held out for the real floor), got {generated} "
            f"generated and {real} real; draw more faces (--n, eval_n) or leave out faceid."
        )
    return n


def precision_recall(
    real: np.ndarray, generated: np.ndarray, k: int = NEIGHBOURS
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of two feature sets [N, D].

    Each set's manifold is the union of balls around its points, each ball reaching the point's
    k-th nearest neighbour within the set. Precision is the share of generated points inside
    the real manifold; recall is the share of real points inside the generated manifold.
    """
    real_t, generated_t = (torch.as_tensor(x, dtype=torch.float64) for x in (real, generated))
    if min(len(real_t), len(generated_t)) <= k:
        raise ConfigError(
            f"precision and recall with k = {k} need more than {k} images on each side, "
            f"got {len(real_t)} real and {len(generated_t)} generated."
        )
    real_radii = _knn_radii(real_t, k)
    generated_radii = _knn_radii(generated_t, k)
    between = torch.cdist(generated_t, real_t)  # [generated, real]
    precision = (between <= real_radii[None, :]).any(dim=1).double().mean()
    recall = (between <= generated_radii[:, None]).any(dim=0).double().mean()
    return float(precision), float(recall)


def _knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    # The k+1-th smallest distance, since each point's nearest is itself at distance 0.
    return torch.cdist(features, features).kthvalue(k + 1, dim=1).values


@dataclass(frozen=True)
class FaceReference:
    """The reference set's descriptors under the protocol, as cached."""

    key: str
    image_size: int
    n: int
    descriptors: np.ndarray  # [n, 128] float32


def face_reference(
    key: str,
    images: np.ndarray | Callable[[], np.ndarray],
    *,
    image_size: int,
    n: int = DEFAULT_N,
    extractor: Callable[[np.ndarray], np.ndarray] | None = None,
) -> FaceReference:
    """The reference set's descriptors, computed once and cached under cache_root().

    `key` names the data set ("celeba", "synthetic-seed0"); `images` is its uint8 array, or a
    callable making it, called only when the cache misses. The first n images are used.
    """
    if not isinstance(key, str) or not key.strip():
        raise ConfigError(f"the reference key must be a non-empty string, got {key!r}.")
    if not callable(images):
        _check_reference(images, image_size, n)
    if extractor is None:
        model_path()  # a missing model package is reported before any work
    name = EXTRACTOR_NAME if extractor is None else extractor_name(extractor)
    meta = reference_meta(
        key, image_size=image_size, n=n, extractor=name, protocol=PROTOCOL_VERSION
    )
    arrays = read_arrays(CACHE_FOLDER, meta, ("descriptors",))
    if arrays is None or arrays["descriptors"].shape != (n, DESCRIPTOR_SIZE):
        if callable(images):
            images = images()
            _check_reference(images, image_size, n)
        descriptors = (extractor or default_extractor())(images[:n]).astype(np.float32)
        arrays = {"descriptors": descriptors}
        write_arrays(CACHE_FOLDER, meta, arrays)
    return FaceReference(key, int(image_size), int(n), arrays["descriptors"])


def _check_reference(images: np.ndarray, image_size: int, n: int) -> None:
    _check_images(images, "reference images")
    if images.shape[1] != image_size:
        raise ConfigError(
            f"the reference images are {images.shape[1]} px but {image_size} px were asked "
            "for; the protocol compares images at the training size."
        )
    _check_count(images, n, "reference")


def compare_descriptors(real: np.ndarray, generated: np.ndarray) -> dict[str, float]:
    """face_distance, face_precision and face_recall of two descriptor sets [N, 128]."""
    real, generated = (np.asarray(x, dtype=np.float64) for x in (real, generated))
    distance = frechet_distance(
        real.mean(axis=0),
        np.cov(real, rowvar=False),
        generated.mean(axis=0),
        np.cov(generated, rowvar=False),
    )
    precision, recall = precision_recall(real, generated)
    return {"face_distance": distance, "face_precision": precision, "face_recall": recall}


def face_measures(
    generated: np.ndarray,
    reference: FaceReference,
    extractor: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, float | int]:
    """The face measures of uint8 images [N, S, S, 3] against a reference set's descriptors.

    Uses the first reference.n generated images. Returns face_distance, face_precision,
    face_recall and n.
    """
    _check_images(generated, "generated images")
    if generated.shape[1] != reference.image_size:
        raise ConfigError(
            f"the generated images are {generated.shape[1]} px but the reference is at "
            f"{reference.image_size} px; the protocol compares images at one size."
        )
    _check_count(generated, reference.n, "generated")
    descriptors = (extractor or default_extractor())(generated[: reference.n])
    return {**compare_descriptors(reference.descriptors, descriptors), "n": reference.n}


def face_metrics(
    generated: np.ndarray,
    reference_key: str,
    reference_images: np.ndarray | Callable[[], np.ndarray],
    *,
    n: int = DEFAULT_N,
    extractor: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, float | int]:
    """The face measures in one call: reference descriptors (cached), then the generated images.

    Every input is checked before anything is computed or cached, so a missing model package
    or too few images leaves the cache untouched.
    """
    _check_images(generated, "generated images")
    _check_count(generated, n, "generated")
    reference = face_reference(
        reference_key,
        reference_images,
        image_size=generated.shape[1],
        n=n,
        extractor=extractor,
    )
    return face_measures(generated, reference, extractor)
