"""Inception features for FID and KID: torch-fidelity's InceptionV3, from a local weights file.

The weights are never downloaded here. They are read from FACEGAN_INCEPTION_WEIGHTS when that is
set, else from torch's hub cache ($TORCH_HOME/hub/checkpoints/, TORCH_HOME defaulting to
~/.cache/torch). Without them InceptionUnavailable says which file to place where.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch

from facegan.errors import FaceGanError
from facegan.runtime import resolve_device

FEATURE = "2048"  # the pool features, for FID and KID alike
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_WEIGHTS_FILE
)
WEIGHTS_ENV = "FACEGAN_INCEPTION_WEIGHTS"
INCEPTION_NAME = "inception-v3-tf-2015-12-05-pool2048"


class InceptionUnavailable(FaceGanError):
    """The Inception weights cannot be had on this machine, so FID and KID cannot be computed."""


def inception_weights_path() -> Path:
    """Where the Inception weights are looked for: $FACEGAN_INCEPTION_WEIGHTS, else torch's hub."""
    named = os.environ.get(WEIGHTS_ENV)
    if named:
        return Path(named).expanduser()
    return _hub_weights_path()


def _hub_weights_path() -> Path:
    # torch.hub.get_dir() honours $TORCH_HOME (default ~/.cache/torch); it is where
    # torch-fidelity itself would save the file.
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


def _placement_help() -> str:
    return (
        f"Place {INCEPTION_WEIGHTS_FILE} (torch-fidelity's InceptionV3 weights, from "
        f"{INCEPTION_WEIGHTS_URL}) at {_hub_weights_path()}, or anywhere and set {WEIGHTS_ENV} "
        "to its path. facegan never downloads it."
    )


def _weights_file() -> Path:
    """The weights file, or InceptionUnavailable saying what is missing and where it may go."""
    if importlib.util.find_spec("torch_fidelity") is None:
        raise InceptionUnavailable(
            "FID/KID unavailable: the torch-fidelity package is not installed; install the "
            "pinned version from requirements.txt (pip install -r requirements.txt)."
        )
    path = inception_weights_path()
    if path.is_file():
        return path
    if os.environ.get(WEIGHTS_ENV):
        where = f"{WEIGHTS_ENV} names {path}, which is not a file"
    else:
        where = f"{INCEPTION_WEIGHTS_FILE} is not at {path}"
    raise InceptionUnavailable(f"FID/KID unavailable: {where}. {_placement_help()}")


def inception_status() -> str | None:
    """None when the Inception weights file is in place, else why FID/KID are unavailable.

    The file is only looked for here; inception_extractor() loads it and reports a damaged one.
    """
    try:
        _weights_file()
    except InceptionUnavailable as error:
        return str(error)
    return None


class InceptionFeatures:
    """torch-fidelity's InceptionV3 as a feature extractor: uint8 [B, S, S, 3] -> [B, 2048]."""

    name = INCEPTION_NAME

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.model = model
        self.device = device

    def __call__(self, images_uint8_nhwc: np.ndarray) -> np.ndarray:
        # A copy: batches may be read-only slices of a memory-mapped cache.
        batch = torch.from_numpy(np.array(images_uint8_nhwc, dtype=np.uint8))
        batch = batch.permute(0, 3, 1, 2).to(self.device)
        with torch.inference_mode():
            (features,) = self.model(batch)
        return features.double().cpu().numpy()


def inception_extractor(device: str = "auto") -> InceptionFeatures:
    """torch-fidelity's InceptionV3 (2048-d pool features), loaded from the local weights file.

    Raises InceptionUnavailable, with the file to place, when the weights are missing or broken.
    """
    path = _weights_file()  # checked first: without a path torch-fidelity would download
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    try:
        model = FeatureExtractorInceptionV3(
            INCEPTION_NAME, [FEATURE], feature_extractor_weights_path=str(path)
        )
    except Exception as error:  # torch.load and load_state_dict fail in many ways on a bad file
        raise InceptionUnavailable(
            f"FID/KID unavailable: {path} could not be loaded as the Inception weights "
            f"({type(error).__name__}: {error}). {_placement_help()}"
        ) from error
    device = resolve_device(device)
    # torch-fidelity 0.3.0 leaves the module in train mode; its BatchNorms need eval mode.
    return InceptionFeatures(model.eval().to(device), device)
