"""Inception: the weights are read from a local file, never downloaded, and their absence or
damage is reported with the file to place, never as a number."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from facegan import fid, inception
from facegan.errors import FaceGanError
from facegan.synthfaces import render_faces


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return render_faces(60, image_size=16, seed=0)[0]


class NetworkUsed(BaseException):
    """Raised by the network stubs; a BaseException so that no `except Exception` hides it."""


@pytest.fixture
def offline(monkeypatch, tmp_path) -> Iterator[Path]:
    """No weights anywhere, and any attempt to reach the network fails the test."""
    attempts = []

    def no_network(*args, **kwargs):
        attempts.append(args)
        raise NetworkUsed(f"tried to reach the network: {args}")

    import torch_fidelity.feature_extractor_inceptionv3 as fidelity_inception

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(fidelity_inception, "load_state_dict_from_url", no_network)
    torch_home = tmp_path / "torch-home"
    torch_home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
    yield torch_home
    assert not attempts


def hub_file(torch_home: Path) -> str:
    return str(torch_home / "hub" / "checkpoints" / inception.INCEPTION_WEIGHTS_FILE)


def test_missing_weights_are_reported_not_downloaded(offline, monkeypatch, tmp_path, faces):
    missing = tmp_path / "nowhere" / inception.INCEPTION_WEIGHTS_FILE
    monkeypatch.setenv(inception.WEIGHTS_ENV, str(missing))
    result = fid.fidelity_metrics(faces, "faces", faces, progress=False)
    assert result["fid"] is None and result["kid"] is None
    reason = result["fid_unavailable"]
    for needed in (
        inception.INCEPTION_WEIGHTS_FILE,
        str(missing),
        hub_file(offline),
        inception.WEIGHTS_ENV,
    ):
        assert needed in reason
    assert inception.inception_status() == reason
    with pytest.raises(inception.InceptionUnavailable, match="never downloads"):
        inception.inception_extractor()
    assert issubclass(inception.InceptionUnavailable, FaceGanError)


def test_without_the_variable_the_hub_cache_is_named(offline, faces):
    result = fid.fidelity_metrics(faces, "faces", faces, progress=False)
    assert result["fid"] is None
    assert f"not at {hub_file(offline)}" in result["fid_unavailable"]


def test_a_damaged_weights_file_is_reported(offline, monkeypatch, tmp_path, faces):
    damaged = tmp_path / inception.INCEPTION_WEIGHTS_FILE
    damaged.write_bytes(b"not a state dict")
    monkeypatch.setenv(inception.WEIGHTS_ENV, str(damaged))
    assert inception.inception_status() is None  # the file is there; loading it is what fails
    result = fid.fidelity_metrics(faces, "faces", faces, progress=False)
    assert result["fid"] is None and "could not be loaded" in result["fid_unavailable"]


def test_the_download_address_in_the_message_is_torch_fidelitys():
    import torch_fidelity.feature_extractor_inceptionv3 as fidelity_inception

    assert fidelity_inception.URL_INCEPTION_V3 == inception.INCEPTION_WEIGHTS_URL


# ------------------------------------------- torch-fidelity's extractor, with random weights


def test_the_real_extractor_loads_a_local_file_and_gives_2048_pool_features(
    offline, monkeypatch, tmp_path
):
    """Builds torch-fidelity's InceptionV3 with random weights, saves them as the weights file,
    and loads that through facegan. The numbers mean nothing; the path is the real one."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    with monkeypatch.context() as patch:  # build once without loading any weights
        patch.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        patch.setattr(
            "torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url",
            lambda *args, **kwargs: {},
        )
        untrained = FeatureExtractorInceptionV3("untrained", ["2048"])
    weights = tmp_path / inception.INCEPTION_WEIGHTS_FILE
    torch.save(untrained.state_dict(), weights)
    monkeypatch.setenv(inception.WEIGHTS_ENV, str(weights))

    assert inception.inception_status() is None
    extractor = inception.inception_extractor(device="cpu")
    assert extractor.model.training is False
    images = render_faces(3, image_size=32, seed=0)[0]
    features = extractor(images)
    assert features.shape == (3, 2048) and features.dtype == np.float64
    assert np.isfinite(features).all() and (features >= 0).all()  # pooled after ReLU
    # Eval-mode BatchNorm: an image's features do not depend on the rest of its batch.
    np.testing.assert_allclose(extractor(images[:1]), features[:1], rtol=1e-5)
