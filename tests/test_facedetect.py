"""Faces found: face detection under the project's fixed Haar protocol."""

import cv2
import numpy as np
import pytest
import torch

from facegan import facedetect
from facegan.errors import ConfigError, FaceGanError
from facegan.facedetect import detect_faces, faces_found
from facegan.synthfaces import render_faces


def test_detect_faces_returns_one_flag_per_image():
    images, _ = render_faces(6, image_size=64)
    found = detect_faces(images)
    assert found.shape == (6,)
    assert found.dtype == bool


def test_rendered_faces_are_found():
    images, _ = render_faces(100, image_size=64, seed=9)
    assert faces_found(images) >= 0.8


def test_uniform_noise_is_not_a_face():
    noise = np.random.default_rng(0).integers(0, 256, size=(50, 64, 64, 3), dtype=np.uint8)
    assert faces_found(noise) <= 0.1


def test_flat_grey_is_not_a_face():
    grey = np.full((10, 32, 32, 3), 128, dtype=np.uint8)
    assert faces_found(grey) == 0.0


def test_rate_is_a_float_between_zero_and_one():
    images, _ = render_faces(4, image_size=32)
    rate = faces_found(images)
    assert isinstance(rate, float) and 0.0 <= rate <= 1.0


def test_protocol_constants_are_exposed():
    assert (facedetect.DETECT_SIZE, facedetect.SCALE_FACTOR) == (128, 1.1)
    assert (facedetect.MIN_NEIGHBORS, facedetect.MIN_SIZE) == (3, 32)


@pytest.mark.parametrize(
    "images",
    [
        np.zeros((2, 32, 32, 3), dtype=np.float32),
        np.zeros((2, 3, 32, 32), dtype=np.uint8),
        np.zeros((2, 32, 32), dtype=np.uint8),
        np.zeros((2, 32, 16, 3), dtype=np.uint8),
        np.zeros((0, 32, 32, 3), dtype=np.uint8),
        torch.zeros(2, 3, 32, 32),
    ],
    ids=["float", "nchw", "grey", "not-square", "empty", "torch"],
)
def test_bad_images_are_a_config_error(images):
    with pytest.raises(ConfigError):
        detect_faces(images)


def test_missing_cascade_is_explained(monkeypatch, tmp_path):
    monkeypatch.setattr(cv2.data, "haarcascades", str(tmp_path) + "/")
    facedetect._cascade.cache_clear()
    try:
        with pytest.raises(FaceGanError, match="cascade"):
            detect_faces(np.zeros((1, 32, 32, 3), dtype=np.uint8))
    finally:
        facedetect._cascade.cache_clear()
