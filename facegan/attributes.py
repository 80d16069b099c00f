"""Attribute coverage of the built-in faces: which looks a generator draws, and how often.

A small CNN, trained on the procedural faces of facegan.synthfaces, reads every attribute of a
face (skin, hair colour, hair style, iris, mouth, glasses, beard), one softmax head each. Reading
N generated faces with it gives three measures, each set beside the same figure for real renders
at the same N, the upper bound:

- modes: how many distinct attribute combinations the faces show (mode collapse shrinks it);
- attribute KL: how far the attribute frequencies are from the real ones (a look the generator
  never draws, or draws too often, grows it);
- confidence: how sure the classifier is of what it reads (blurred or broken faces lower it).

The classifier is trained on renders from seeds that GAN training does not use by default, at
the GAN's image size, and cached; its held-out accuracy travels with the cache. At 16 px an iris
is under a pixel wide and is read little better than chance, so there eye colour adds noise to
the modes rather than signal; every other attribute reads above 94% at 16 px and above 97% at
32 px and 64 px (benchmarks/results/coverage.json).
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from facegan import data
from facegan.errors import ConfigError
from facegan.images import check_face_images, check_image_size, to_float
from facegan.synthfaces import ATTRIBUTES, RENDER_CHUNK, RENDERER_VERSION, render_faces

# Part of the cache key: bump it whenever the network, its training or its inputs change.
CLASSIFIER_VERSION = "1"

# Every image size is brought to this working size (box-averaged down, bilinear up), so one
# network design serves 16..256 px. At 32 px an iris is still one or two pixels wide.
WORK_SIZE = 32

# Seeds of the rendered sets. GAN training renders seed 0 by default; these are far from it so
# the classifier never trains or is tested on the faces the GAN learns from.
TRAIN_SEED = 1001
TEST_SEED = 1002
REFERENCE_SEED = 1003
CLASSIFIER_SEED = 0  # network initialisation and batch order

# The default training budget: under 50 s on one core at 32 px, rendering included
# (benchmarks/attributes.py measures it). Epochs are cheaper than fresh renders here: rendering a
# face costs about as much as two passes of it through a training step.
N_TRAIN = 8000
N_TEST = 2000
EPOCHS = 6
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
WIDTH = 16
HIDDEN = 128

# Pseudo-count added to every attribute value before taking KL: a value the generator never
# draws then costs a large but finite amount (about 1.7 nats when a look worn by 30% of real
# faces, such as glasses, is missing at N = 1000).
KL_SMOOTHING = 0.5

_PREDICT_BATCH = 500


class AttributeNet(nn.Module):
    """Three conv blocks halve 32 px to 4x4; a shared hidden layer feeds one head per attribute.

    Flattening the 4x4 map (rather than pooling it) keeps where things are: eyes, mouth and beard
    sit in known places on these faces.
    """

    def __init__(self, width: int = WIDTH, hidden: int = HIDDEN) -> None:
        super().__init__()
        side = WORK_SIZE // 8
        self.features = nn.Sequential(
            _conv_block(3, width),
            _conv_block(width, 2 * width),
            _conv_block(2 * width, 4 * width),
            nn.Flatten(),
            nn.Linear(4 * width * side * side, hidden),
            nn.ReLU(inplace=True),
        )
        self.heads = nn.ModuleDict(
            {name: nn.Linear(hidden, count) for name, count in ATTRIBUTES.items()}
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = self.features(x)
        return {name: head(shared) for name, head in self.heads.items()}


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class AttributeClassifier:
    """A trained AttributeNet for faces of one image size, with its held-out accuracy.

    `accuracy` maps each attribute to the fraction of held-out renders it reads right, plus
    "mean" (the mean over attributes) and "joint" (faces with every attribute right).
    """

    def __init__(
        self, net: AttributeNet, image_size: int, accuracy: dict[str, float], train_seconds: float
    ) -> None:
        self.net = net.eval()
        self.image_size = image_size
        self.accuracy = accuracy
        self.train_seconds = train_seconds
        # Predictions on the real reference draws, by N: they never change for these weights.
        self._references: dict[int, dict[str, np.ndarray]] = {}

    def probabilities(self, images: np.ndarray, progress: bool = False) -> dict[str, np.ndarray]:
        """Softmax probabilities per attribute, float32 [N, values], for uint8 [N, S, S, 3]."""
        _check_images(images, self.image_size)
        parts: dict[str, list[np.ndarray]] = {name: [] for name in ATTRIBUTES}
        with (
            torch.inference_mode(),
            tqdm(
                total=len(images), desc="reading attributes", unit="img", disable=not progress
            ) as bar,
        ):
            for start in range(0, len(images), _PREDICT_BATCH):
                batch = images[start : start + _PREDICT_BATCH]
                for name, logits in self.net(_working_batch(batch)).items():
                    parts[name].append(logits.softmax(dim=1).numpy())
                bar.update(len(batch))
        return {name: np.concatenate(chunks) for name, chunks in parts.items()}

    def predict(self, images: np.ndarray, progress: bool = False) -> dict[str, np.ndarray]:
        """The most likely value of each attribute, int64 [N], for uint8 [N, S, S, 3]."""
        return _labels(self.probabilities(images, progress))

    def _reference(self, n: int, progress: bool) -> dict[str, np.ndarray]:
        """Probabilities for 2n real renders: faces [0, n) and [n, 2n) are independent draws."""
        if n not in self._references:
            faces = data.load_faces(
                "synthetic", self.image_size, 2 * n, seed=REFERENCE_SEED, progress=progress
            )
            self._references[n] = self.probabilities(faces.images, progress)
        return self._references[n]


def attribute_classifier(
    image_size: int = 32,
    progress: bool = True,
    *,
    n_train: int = N_TRAIN,
    n_test: int = N_TEST,
    epochs: int = EPOCHS,
) -> AttributeClassifier:
    """The attribute classifier for faces of image_size px, trained once and then cached.

    The cache lives under facegan.data.cache_root(), keyed by CLASSIFIER_VERSION, the renderer's
    RENDERER_VERSION, the image size and the training budget (n_train renders, epochs, n_test
    held-out renders). A cache file that cannot be read is replaced by a fresh training, with a
    warning. Training leaves torch's global random state as it found it.
    """
    check_image_size(image_size)
    _check_budget(n_train, n_test, epochs)
    key = {
        "classifier": CLASSIFIER_VERSION,
        "renderer": RENDERER_VERSION,
        "image_size": image_size,
        "n_train": n_train,
        "n_test": n_test,
        "epochs": epochs,
    }
    path = _cache_path(key)
    if path.exists():
        cached = _load(path, key)
        if cached is not None:
            return cached
    classifier = _train(image_size, n_train, n_test, epochs, progress=progress)
    _save(path, key, classifier)
    return classifier


def coverage(
    images: np.ndarray, classifier: AttributeClassifier | None = None, progress: bool = True
) -> dict:
    """How well N generated faces (uint8 [N, S, S, 3] RGB) cover the synthetic face set.

    The images must be at the classifier's image size; with classifier=None the cached
    classifier for the images' own size is used (trained first if needed). The real figures
    come from 2N renders of REFERENCE_SEED: draw A = faces [0, N), draw B = faces [N, 2N).
    All attributes are read by the classifier on both sides, so its errors affect both alike.

    Returns:
        n: N.
        modes: distinct attribute combinations (the argmax of every head, joined) among the N.
        modes_real: the same count for draw A; mode_coverage = modes / modes_real. It can pass 1
            when a generator spreads over rare combinations too evenly: attribute_kl shows that.
        attribute_kl: sum over attributes of KL(real || generated) in nats, where real and
            generated are the attribute's value frequencies in draw A and in the N images, each
            smoothed as (count + KL_SMOOTHING) / (N + KL_SMOOTHING * values).
        kl_by_attribute: the terms of that sum, by attribute.
        confidence: mean over faces of the mean over heads of the largest softmax probability.
        real_mode_coverage, real_attribute_kl, real_confidence: the same figures with draw B
            standing in for the generator: the upper bound at this N.
        classifier_accuracy: the classifier's held-out accuracy (see AttributeClassifier).
    """
    _check_images(images, None if classifier is None else classifier.image_size)
    n, image_size = len(images), int(images.shape[1])
    if classifier is None:
        classifier = attribute_classifier(image_size, progress)
    generated = classifier.probabilities(images, progress)
    reference = classifier._reference(n, progress)
    real_a = {name: values[:n] for name, values in reference.items()}
    real_b = {name: values[n:] for name, values in reference.items()}
    modes, modes_real = _count_modes(generated), _count_modes(real_a)
    kl_by_attribute = _attribute_kl(real_a, generated)
    return {
        "n": n,
        "modes": modes,
        "modes_real": modes_real,
        "mode_coverage": modes / modes_real,
        "attribute_kl": sum(kl_by_attribute.values()),
        "kl_by_attribute": kl_by_attribute,
        "confidence": _confidence(generated),
        "real_mode_coverage": _count_modes(real_b) / modes_real,
        "real_attribute_kl": sum(_attribute_kl(real_a, real_b).values()),
        "real_confidence": _confidence(real_b),
        "classifier_accuracy": dict(classifier.accuracy),
    }


# -- the measures ------------------------------------------------------------------------------


def _labels(probabilities: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: p.argmax(axis=1).astype(np.int64) for name, p in probabilities.items()}


def _count_modes(probabilities: dict[str, np.ndarray]) -> int:
    combinations = np.stack(list(_labels(probabilities).values()), axis=1)
    return len(np.unique(combinations, axis=0))


def _attribute_kl(
    real: dict[str, np.ndarray], generated: dict[str, np.ndarray]
) -> dict[str, float]:
    real_labels, generated_labels = _labels(real), _labels(generated)
    return {
        name: _kl(_smoothed(real_labels[name], count), _smoothed(generated_labels[name], count))
        for name, count in ATTRIBUTES.items()
    }


def _smoothed(labels: np.ndarray, count: int) -> np.ndarray:
    counts = np.bincount(labels, minlength=count).astype(np.float64)
    return (counts + KL_SMOOTHING) / (len(labels) + KL_SMOOTHING * count)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.sum(p * np.log(p / q)))


def _confidence(probabilities: dict[str, np.ndarray]) -> float:
    per_head = np.stack([p.max(axis=1) for p in probabilities.values()], axis=1)
    return float(per_head.mean())


# -- training ----------------------------------------------------------------------------------


def _train(
    image_size: int, n_train: int, n_test: int, epochs: int, *, progress: bool
) -> AttributeClassifier:
    """Render the training and held-out faces, fit the network, measure its accuracy."""
    start = time.perf_counter()
    with tqdm(
        total=n_train + n_test, desc="rendering classifier faces", unit="img", disable=not progress
    ) as bar:
        x_train, y_train = _render_set(n_train, image_size, TRAIN_SEED, bar)
        x_test, y_test = _render_set(n_test, image_size, TEST_SEED, bar)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(CLASSIFIER_SEED)
        net = AttributeNet().to(memory_format=torch.channels_last)
        _fit(net, x_train, y_train, epochs, progress=progress)
    accuracy = _accuracy(net.eval(), x_test, y_test)
    return AttributeClassifier(net, image_size, accuracy, time.perf_counter() - start)


def _render_set(n: int, image_size: int, seed: int, bar: tqdm) -> tuple[torch.Tensor, torch.Tensor]:
    """n renders at working size, float [n, 3, 32, 32], and labels int64 [n, attributes]."""
    inputs, labels = [], []
    for start in range(0, n, RENDER_CHUNK):
        count = min(RENDER_CHUNK, n - start)
        images, attributes = render_faces(count, image_size, seed, start)
        inputs.append(_working_batch(images))
        labels.append(torch.from_numpy(np.stack([attributes[name] for name in ATTRIBUTES], 1)))
        bar.update(count)
    return torch.cat(inputs), torch.cat(labels)


def _fit(
    net: AttributeNet, inputs: torch.Tensor, labels: torch.Tensor, epochs: int, *, progress: bool
) -> None:
    """Adam with a one-cycle learning rate: one short warm-up, then a long decay."""
    steps_per_epoch = len(inputs) // BATCH_SIZE
    optimizer = torch.optim.AdamW(net.parameters(), LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, LEARNING_RATE, total_steps=epochs * steps_per_epoch, pct_start=0.2
    )
    net.train()
    with tqdm(
        total=epochs * steps_per_epoch,
        desc="training attribute classifier",
        unit="step",
        disable=not progress,
    ) as bar:
        for _ in range(epochs):
            order = torch.randperm(len(inputs))
            for step in range(steps_per_epoch):
                batch = order[step * BATCH_SIZE : (step + 1) * BATCH_SIZE]
                loss = _loss(net(inputs[batch]), labels[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")


def _loss(logits: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """The sum of the heads' cross-entropies: every attribute counts alike."""
    return sum(
        F.cross_entropy(head, labels[:, column]) for column, head in enumerate(logits.values())
    )


def _accuracy(net: AttributeNet, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    with torch.inference_mode():
        predicted = torch.cat(
            [
                torch.stack([head.argmax(1) for head in net(batch).values()], dim=1)
                for batch in inputs.split(_PREDICT_BATCH)
            ]
        )
    right = predicted == labels
    accuracy = {
        name: float(right[:, column].float().mean()) for column, name in enumerate(ATTRIBUTES)
    }
    accuracy["mean"] = float(right.float().mean())
    accuracy["joint"] = float(right.all(dim=1).float().mean())
    return accuracy


def _working_batch(images: np.ndarray) -> torch.Tensor:
    """uint8 [B, S, S, 3] -> float [B, 3, 32, 32] in [-1, 1]: box-averaged down, bilinear up."""
    # np.array copies out of read-only memory maps, which torch cannot wrap.
    x = to_float(torch.from_numpy(np.array(images)))
    size = x.shape[-1]
    if size > WORK_SIZE:
        x = F.avg_pool2d(x, size // WORK_SIZE)
    elif size < WORK_SIZE:
        x = F.interpolate(x, size=WORK_SIZE, mode="bilinear", align_corners=False)
    return x.contiguous(memory_format=torch.channels_last)


# -- cache and checks --------------------------------------------------------------------------


def _cache_path(key: dict[str, object]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return data.cache_root() / f"attribute-classifier-{key['image_size']}px-{digest}.pt"


def _save(path: Path, key: dict[str, object], classifier: AttributeClassifier) -> None:
    saved = {
        "key": key,
        "state_dict": classifier.net.state_dict(),
        "accuracy": classifier.accuracy,
        "train_seconds": classifier.train_seconds,
    }
    data.write_atomic(path, lambda file: torch.save(saved, file))


def _load(path: Path, key: dict[str, object]) -> AttributeClassifier | None:
    """The cached classifier, or None (with a warning) when the file is unreadable or stale."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved["key"] != key:
            raise ValueError(f"it was made for {saved['key']}")
        net = AttributeNet().to(memory_format=torch.channels_last)
        net.load_state_dict(saved["state_dict"])
        accuracy = {str(name): float(value) for name, value in saved["accuracy"].items()}
        return AttributeClassifier(net, int(key["image_size"]), accuracy, saved["train_seconds"])
    except Exception as error:  # torch.load raises many types on a damaged file; all mean retrain.
        warnings.warn(
            f"the cached attribute classifier {path} could not be used "
            f"({type(error).__name__}: {error}); training a new one.",
            stacklevel=3,
        )
        return None


def _check_budget(n_train: int, n_test: int, epochs: int) -> None:
    for name, value, least in (
        ("n_train", n_train, BATCH_SIZE),
        ("n_test", n_test, 1),
        ("epochs", epochs, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"{name}={value!r} is not allowed: use a whole number >= {least}.")


def _check_images(images: np.ndarray, image_size: int | None) -> None:
    """Raise ConfigError unless images is uint8 [N >= 1, S, S, 3] at a supported S."""
    check_face_images(images, "coverage's faces")
    size = int(images.shape[1])
    check_image_size(size)
    if image_size is not None and size != image_size:
        raise ConfigError(
            f"the attribute classifier reads {image_size} px faces but these are {size} px; "
            f"use attribute_classifier({size}), or leave classifier=None to pick it by size."
        )
