"""Measures of generated faces, and the Evaluator that training and `eval` use.

Face detection uses OpenCV's Haar frontal-face cascade under one fixed protocol, so that rates
from the synthetic set, the real data and the generator can be compared with each other.
Synthetic-face coverage lives in facegan.coverage, FID and KID in facegan.fid; the Evaluator
runs whichever apply and names the main metric, by which runs keep their best checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import cv2
import numpy as np
import torch

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


def face_detection_rate(images: np.ndarray) -> float:
    """Fraction of images in which the Haar cascade finds a face."""
    return float(detect_faces(images).mean())


def check_face_images(images: object, what: str = "images", minimum: int = 1) -> None:
    """Raise ConfigError unless images is a uint8 numpy array [N >= minimum, S, S, 3].

    Every measure takes faces in this one layout; what names them in the message.
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        kind = getattr(images, "dtype", type(images).__name__)
        raise ConfigError(
            f"{what} must be a uint8 numpy array of RGB images [N, S, S, 3], got {kind}; "
            "convert generator output in [-1, 1] with facegan.metrics.to_uint8 first."
        )
    if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
        hint = " (that looks like NCHW: move the channels last)" if images.ndim == 4 else ""
        raise ConfigError(
            f"{what} must be square RGB images shaped [N, S, S, 3], got {images.shape}{hint}."
        )
    if len(images) < minimum:
        count = "one image" if minimum == 1 else f"{minimum} images"
        raise ConfigError(f"{what}: need at least {count}, got {len(images)}.")


METRICS = ("faces", "coverage", "fid")
# Training on a CPU leaves FID out: InceptionV3 at 299 px per face is far more compute than
# a 32 px DCGAN step, so one evaluation of 2,048 faces would outlast most CPU training runs.
CPU_TRAINING_METRICS = ("faces", "coverage")
FID_SKIPPED = (
    "not measured during CPU training (Inception is too slow there); "
    "run python -m facegan eval --metrics fid on the checkpoint"
)
# The main metric is the first of these that a result holds, and whether higher is better:
# FID when Inception is at hand, else attribute KL on the built-in faces, else the ratio of
# generated to real face-detection rates.
MAIN_METRICS = (("fid", False), ("attribute_kl", False), ("face_rate_ratio", True))


class Evaluator:
    """Scores batches of generated faces against one real set; real-side figures are cached.

    real: uint8 [N, S, S, 3] faces of the training data. synthetic: whether they are the
    built-in faces, whose attributes make the coverage measures possible. reference_key names
    the real set in the FID statistics cache. extractor stands in for Inception (tests).
    """

    def __init__(
        self,
        real: np.ndarray,
        synthetic: bool,
        reference_key: str,
        metrics: Sequence[str] = METRICS,
        extractor: object | None = None,
        progress: bool = True,
    ) -> None:
        unknown = sorted(set(metrics) - set(METRICS))
        if unknown or not metrics:
            raise ConfigError(f"metrics {unknown or '[]'} unknown: choose from {METRICS}.")
        check_face_images(real, "real faces")
        self.real, self.synthetic, self.reference_key = real, synthetic, reference_key
        self.metrics, self.extractor, self.progress = tuple(metrics), extractor, progress
        self._real_face_rate: float | None = None

    def __call__(self, generated: np.ndarray) -> dict:
        """The metrics of generated faces (uint8 [N, S, S, 3]) as a flat dict of numbers."""
        check_face_images(generated, "generated faces")
        if generated.shape[1:] != self.real.shape[1:]:
            raise ConfigError(
                f"generated faces are {generated.shape[1]} px but the real ones are "
                f"{self.real.shape[1]} px: evaluate at the training size."
            )
        result: dict = {"n": len(generated)}
        if "faces" in self.metrics:
            result.update(self._faces(generated))
        if "coverage" in self.metrics and self.synthetic:
            from facegan.coverage import coverage

            result.update(coverage(generated, progress=self.progress))
        if "fid" in self.metrics:
            from facegan.fid import fidelity_metrics

            result.update(
                fidelity_metrics(
                    generated, self.reference_key, self.real, self.extractor, self.progress
                )
            )
        result["main_metric"] = main_metric(result)[0]
        return result

    def _faces(self, generated: np.ndarray) -> dict:
        if self._real_face_rate is None:
            self._real_face_rate = face_detection_rate(self.real[: len(generated)])
        rate = face_detection_rate(generated)
        ratio = rate / self._real_face_rate if self._real_face_rate else float("nan")
        return {"face_rate": rate, "face_rate_real": self._real_face_rate, "face_rate_ratio": ratio}


def main_metric(result: dict) -> tuple[str, bool]:
    """The name of a result's main metric and whether higher is better."""
    for name, higher in MAIN_METRICS:
        if result.get(name) is not None:
            return name, higher
    raise ConfigError("the result holds no metric that can rank checkpoints; evaluate 'faces'.")


def is_better(result: dict, best: dict | None) -> bool:
    """Whether result beats best on result's main metric (any result beats none)."""
    name, higher = main_metric(result)
    if best is None or best.get(name) is None:
        return True
    return result[name] > best[name] if higher else result[name] < best[name]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator output [N, 3, S, S] in [-1, 1] as uint8 [N, S, S, 3], rounded like a PNG."""
    pixels = images.detach().float().clamp(-1, 1).add(1).mul(127.5).add_(0.5).floor_()
    return pixels.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
