"""Benchmark attribute coverage: classifier training time and accuracy, and what it scores.

Run from the repository root:

    python -m benchmarks.attributes [--sizes 16 32 64] [--n 1000]

Trains the default attribute classifier from scratch for each size on one core (one torch
thread, in an empty temporary cache), then scores real renders and five broken generators at
the first size. Writes benchmarks/results/attributes.json (hardware, versions, timings, figures).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from benchmarks.machine import cpu_model, pin_to_one_core
from benchmarks.record import REPO, RESULTS, write_results
from facegan import attributes as coverage
from facegan.synthfaces import RENDERER_VERSION, render_faces

GENERATOR_SEED = 9  # the "generated" faces: a seed no classifier or reference set uses


def main() -> None:
    args = parse_args()
    pinned = pin_to_one_core()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["FACEGAN_CACHE"] = cache
        trained = {size: train(size) for size in args.sizes}
        size = args.sizes[0]
        scores = score_generators(trained[size][0], size, args.n)

    result = {
        "classifier_version": coverage.CLASSIFIER_VERSION,
        "renderer_version": RENDERER_VERSION,
        "hardware": {"cpu": cpu_model(), "cores": os.cpu_count(), "pinned_core": pinned},
        "torch_threads": torch.get_num_threads(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "budget": {
            "n_train": coverage.N_TRAIN,
            "n_test": coverage.N_TEST,
            "epochs": coverage.EPOCHS,
            "work_size": coverage.WORK_SIZE,
        },
        "classifiers": {f"{size}px": record for size, (_, record) in trained.items()},
        "scores": {"image_size": size, "n": args.n, "generators": scores},
    }
    out = RESULTS / "attributes.json"
    write_results(out, result)
    print_tables(result)
    print(f"wrote {out.relative_to(REPO)}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 16, 64])
    parser.add_argument("--n", type=int, default=1000, help="faces per scored generator")
    return parser.parse_args()


def train(size: int) -> tuple[coverage.AttributeClassifier, dict]:
    """The default classifier for size, trained from scratch, and what it cost and reached."""
    start = time.perf_counter()
    classifier = coverage.attribute_classifier(size, progress=True)
    return classifier, {
        "seconds": round(time.perf_counter() - start, 1),
        "accuracy": {name: round(value, 4) for name, value in classifier.accuracy.items()},
    }


def score_generators(classifier: coverage.AttributeClassifier, size: int, n: int) -> dict:
    """Score real renders and broken stand-ins for a generator, with the time each call took."""
    images, attributes = render_faces(2 * n, size, seed=GENERATOR_SEED)
    noise = np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    generators = {
        "real renders": images[:n],
        "one image repeated": np.repeat(images[:1], n, axis=0),
        "uniform noise": noise,
        "blurred (to 1/4 size and back)": np.stack([blur(face) for face in images[:n]]),
        "never draws glasses": images[attributes["glasses"] == 0][:n],
        "never draws a full beard": images[attributes["beard"] != 2][:n],
    }
    scores = {}
    for name, faces in generators.items():
        start = time.perf_counter()
        result = coverage.coverage(faces, classifier, progress=False)
        result.pop("classifier_accuracy")
        scores[name] = {key: rounded(value) for key, value in result.items()}
        # The first call also renders and reads the 2N reference faces.
        scores[name]["seconds"] = round(time.perf_counter() - start, 2)
    return scores


def blur(face: np.ndarray) -> np.ndarray:
    size = face.shape[0]
    small = Image.fromarray(face).resize((size // 4, size // 4), Image.Resampling.BILINEAR)
    return np.asarray(small.resize((size, size), Image.Resampling.BILINEAR))


def rounded(value: object) -> object:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    return value


def print_tables(result: dict) -> None:
    print(f"CPU {result['hardware']['cpu']}, 1 core, {result['torch_threads']} torch thread")
    print("\nclassifier from scratch   seconds   held-out accuracy")
    for size, record in result["classifiers"].items():
        accuracy = ", ".join(f"{name} {value:.3f}" for name, value in record["accuracy"].items())
        print(f"{size:>24}   {record['seconds']:>7.1f}   {accuracy}")
    scores = result["scores"]
    print(f"\nscores at {scores['image_size']} px, N = {scores['n']}")
    columns = ("modes", "mode_coverage", "attribute_kl", "confidence", "seconds")
    print(f"{'generator':<32}" + "".join(f"{column:>15}" for column in columns))
    for name, row in scores["generators"].items():
        print(f"{name:<32}" + "".join(f"{row[column]:>15}" for column in columns))
    real = scores["generators"]["real renders"]
    bound = ", ".join(
        f"{key} {real[key]}"
        for key in ("modes_real", "real_mode_coverage", "real_attribute_kl", "real_confidence")
    )
    print(f"upper bound (two real draws): {bound}")


if __name__ == "__main__":
    main()
