"""Measures of generated faces.

Face detection uses OpenCV's Haar frontal-face cascade under one fixed protocol, so that rates
from the synthetic set, the real data and the generator can be compared with each other.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from facegan.errors import ConfigError, FaceGanError

# The detection protocol, used project-wide; benchmarks and reports print these.
CASCADE_FILE = "haarcascade_frontalface_default.xml"
DETECT_SIZE = 128  # images are upscaled to this square first so small images can be scanned
SCALE_FACTOR = 1.1
MIN_NEIGHBORS = 3
MIN_SIZE = 32


@cache
def _cascade() -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + CASCADE_FILE
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise FaceGanError(
            f"OpenCV's face cascade could not be loaded from {path}; reinstall "
            "opencv-python-headless 4.x (see requirements.txt), which ships the Haar cascades."
        )
    return cascade


def detect_faces(images: np.ndarray) -> np.ndarray:
    """For uint8 RGB images [N, S, S, 3], whether the Haar cascade finds at least one face."""
    _check_images(images)
    cascade = _cascade()
    found = np.zeros(len(images), dtype=bool)
    for index, image in enumerate(images):
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        grey = cv2.resize(grey, (DETECT_SIZE, DETECT_SIZE), interpolation=cv2.INTER_LINEAR)
        faces = cascade.detectMultiScale(
            grey,
            scaleFactor=SCALE_FACTOR,
            minNeighbors=MIN_NEIGHBORS,
            minSize=(MIN_SIZE, MIN_SIZE),
        )
        found[index] = len(faces) > 0
    return found


def face_detection_rate(images: np.ndarray) -> float:
    """Fraction of images in which the Haar cascade finds a face."""
    return float(detect_faces(images).mean())


def _check_images(images: np.ndarray) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        kind = getattr(images, "dtype", type(images).__name__)
        raise ConfigError(
            f"face detection needs a uint8 numpy array of RGB images, got {kind}; "
            "convert generator output with (x + 1) * 127.5 to uint8 NHWC first."
        )
    if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
        raise ConfigError(
            f"face detection needs square RGB images shaped [N, S, S, 3], got {images.shape}."
        )
    if len(images) == 0:
        raise ConfigError("face detection needs at least one image, got an empty batch.")
