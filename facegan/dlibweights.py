"""dlib's face-recognition network as its shipped file holds it: where it is, and its weights.

face-recognition-models ships dlib_face_recognition_resnet_model_v1.dat in dlib's own
serialization format. This module finds the file without importing the package, reads the
layers that hold parameters, and converts them once into a state dict for facegan.faceid's
FaceDescriptorNet, cached as a .pt file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from facegan.data import cache_root, write_atomic
from facegan.errors import FaceGanError

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


def face_models_installed() -> bool:
    """Whether dlib's face models are installed here (see model_path)."""
    try:
        model_path()
    except FaceModelUnavailable:
        return False
    return True


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
