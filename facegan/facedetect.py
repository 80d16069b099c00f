"""Faces found: how often OpenCV's Haar frontal-face cascade finds a face in an image.

One fixed detection protocol serves the whole project, so that the rates of the built-in faces,
the real data and the generator can be compared with each other.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from facegan.errors import FaceGanError
from facegan.images import check_face_images

# The detection protocol; benchmarks and reports print these.
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
    check_face_images(images, "face detection's images")
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


def faces_found(images: np.ndarray) -> float:
    """The fraction of images in which the Haar cascade finds a face."""
    return float(detect_faces(images).mean())
