"""Evaluation: the Evaluator runs the measures, names the main metric, and ranks checkpoints.

Each measure scores generated faces against one real set: faces found (facegan.facedetect),
attribute coverage of the built-in faces (facegan.attributes), and FID/KID (facegan.fid). The
main metric is the first of MAIN_METRICS that a result holds; runs keep as best.pt the
checkpoint whose evaluation ranks best by it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from facegan.errors import ConfigError
from facegan.facedetect import faces_found
from facegan.images import check_face_images, to_uint8
from facegan.models import Generator, sample_images

METRICS = ("faces_found", "coverage", "fid")
# The earlier name of faces_found, still accepted wherever metrics are named.
METRIC_ALIASES = {"faces": "faces_found"}
# Training on a CPU leaves FID out: InceptionV3 at 299 px per face is far more compute than
# a 32 px DCGAN step, so one evaluation of 2,048 faces would outlast most CPU training runs.
CPU_TRAINING_METRICS = ("faces_found", "coverage")
FID_SKIPPED = (
    "not measured during CPU training (Inception is too slow there); "
    "run python -m facegan eval --metrics fid on the checkpoint"
)
# The main metric is the first of these that a result holds, and whether higher is better:
# FID when Inception is at hand, else attribute KL on the built-in faces, else the ratio of
# generated to real faces-found rates.
MAIN_METRICS = (("fid", False), ("attribute_kl", False), ("faces_found_ratio", True))
# Evaluations draw their own z from seed + this, so they leave training's random streams alone.
EVAL_SEED_OFFSET = 7919
EVAL_BATCH = 512


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
        *,
        extractor: object | None = None,
        progress: bool = True,
    ) -> None:
        metrics = tuple(METRIC_ALIASES.get(name, name) for name in metrics)
        unknown = sorted(set(metrics) - set(METRICS))
        if unknown or not metrics:
            raise ConfigError(f"metrics {unknown or '[]'} unknown: choose from {METRICS}.")
        check_face_images(real, "real faces")
        self.real, self.synthetic, self.reference_key = real, synthetic, reference_key
        self.metrics, self.extractor, self.progress = metrics, extractor, progress
        self._real_faces_found: float | None = None

    def __call__(self, generated: np.ndarray) -> dict:
        """The metrics of generated faces (uint8 [N, S, S, 3]) as a flat dict of numbers."""
        check_face_images(generated, "generated faces")
        if generated.shape[1:] != self.real.shape[1:]:
            raise ConfigError(
                f"generated faces are {generated.shape[1]} px but the real ones are "
                f"{self.real.shape[1]} px: evaluate at the training size."
            )
        result: dict = {"n": len(generated)}
        if "faces_found" in self.metrics:
            result.update(self._faces_found(generated))
        if "coverage" in self.metrics and self.synthetic:
            from facegan.attributes import coverage  # trains its classifier on first use

            result.update(coverage(generated, progress=self.progress))
        if "fid" in self.metrics:
            from facegan.fid import fidelity_metrics  # scipy and Inception: only when asked

            result.update(
                fidelity_metrics(
                    generated,
                    self.reference_key,
                    self.real,
                    self.extractor,
                    progress=self.progress,
                )
            )
        result["main_metric"] = main_metric(result)[0]
        return result

    def _faces_found(self, generated: np.ndarray) -> dict:
        if self._real_faces_found is None:
            self._real_faces_found = faces_found(self.real[: len(generated)])
        rate = faces_found(generated)
        real = self._real_faces_found
        ratio = rate / real if real else float("nan")
        return {"faces_found": rate, "faces_found_real": real, "faces_found_ratio": ratio}


def training_metrics(device: torch.device) -> tuple[str, ...]:
    """The measures an evaluation during training runs: all of them, but FID off the GPU."""
    return METRICS if device.type == "cuda" else CPU_TRAINING_METRICS


def main_metric(result: dict) -> tuple[str, bool]:
    """The name of a result's main metric and whether higher is better."""
    for name, higher in MAIN_METRICS:
        if result.get(name) is not None:
            return name, higher
    raise ConfigError(
        "the result holds no metric that can rank checkpoints; evaluate 'faces_found'."
    )


def is_better(result: dict, best: dict | None) -> bool:
    """Whether result beats best on result's main metric (any result beats none)."""
    name, higher = main_metric(result)
    if best is None or best.get(name) is None:
        return True
    return result[name] > best[name] if higher else result[name] < best[name]


def best_evaluation(history: list[dict]) -> dict | None:
    """The evaluation row that ranks best by its main metric, or None before any."""
    best = None
    for row in history:
        if row.get("kind") == "eval" and is_better(row, best):
            best = row
    return best


def draw_faces(generator: Generator, n: int, seed: int) -> np.ndarray:
    """n faces of G as uint8 [n, S, S, 3], z drawn from seed, in batches of EVAL_BATCH."""
    z = torch.randn(n, generator.z_size, generator=torch.Generator().manual_seed(seed))
    return np.concatenate(
        [to_uint8(sample_images(generator, part)) for part in z.split(EVAL_BATCH)]
    )
