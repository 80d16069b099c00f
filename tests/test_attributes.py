"""Attribute coverage: an accurate, cached classifier, and measures that fail bad generators."""

import numpy as np
import pytest
import torch
from PIL import Image

from facegan import attributes as attributes_module
from facegan.attributes import AttributeClassifier, attribute_classifier, coverage
from facegan.errors import ConfigError
from facegan.synthfaces import ATTRIBUTES, render_faces

# Faces per measured set. At N = 1000 real renders show about 750 distinct attribute
# combinations, so losing every face with glasses (or every full beard) visibly lowers the count.
N = 1000
# A classifier that trains in about a second: enough to exercise the cache, not to measure.
SMALL = {"n_train": 128, "n_test": 32, "epochs": 1}


@pytest.fixture(scope="session")
def classifier() -> AttributeClassifier:
    """The default classifier at 32 px, trained once per session (about 50 s on one core)."""
    return attribute_classifier(32, progress=False)


@pytest.fixture(scope="module")
def renders() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Real renders from a seed that neither the classifier nor the reference draws use."""
    return render_faces(1500, 32, seed=9)


@pytest.fixture(scope="module")
def real_scores(classifier, renders) -> dict:
    """The scores of N real renders: what a perfect generator would get."""
    return coverage(renders[0][:N], classifier, progress=False)


@pytest.fixture
def count_training(monkeypatch, tmp_path) -> list[int]:
    """An empty cache folder of the test's own, and a list that grows by one per training."""
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path))
    trainings: list[int] = []
    train = attributes_module._train

    def counted(*args, **kwargs):
        trainings.append(1)
        return train(*args, **kwargs)

    monkeypatch.setattr(attributes_module, "_train", counted)
    return trainings


# -- the classifier ----------------------------------------------------------------------------


def test_default_classifier_reads_held_out_renders_accurately(classifier):
    # 95% per attribute is the target. Joint accuracy bounds the spurious modes a misread
    # face can add; the real draws are read by the same classifier, so the bias is shared.
    assert set(classifier.accuracy) == {*ATTRIBUTES, "mean", "joint"}
    for name in ATTRIBUTES:
        assert classifier.accuracy[name] >= 0.95, (name, classifier.accuracy)
    assert classifier.accuracy["joint"] >= 0.90, classifier.accuracy


def test_predictions_match_the_renderer_on_faces_from_another_seed(classifier, renders):
    images, attributes = renders
    predicted = classifier.predict(images)
    for name in ATTRIBUTES:
        assert predicted[name].dtype == np.int64
        assert np.mean(predicted[name] == attributes[name]) >= 0.95, name


def test_probabilities_are_distributions_whose_argmax_is_the_prediction(classifier, renders):
    images = renders[0][:20]
    probabilities, predicted = classifier.probabilities(images), classifier.predict(images)
    for name, count in ATTRIBUTES.items():
        assert probabilities[name].shape == (20, count)
        np.testing.assert_allclose(probabilities[name].sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(probabilities[name].argmax(axis=1), predicted[name])


# -- the measures ------------------------------------------------------------------------------


def test_real_renders_score_like_the_upper_bound(real_scores):
    assert real_scores["n"] == N
    assert real_scores["modes_real"] > 600
    assert 0.9 <= real_scores["mode_coverage"] <= 1.1
    assert abs(real_scores["mode_coverage"] - real_scores["real_mode_coverage"]) < 0.05
    assert real_scores["attribute_kl"] < 0.05 and real_scores["real_attribute_kl"] < 0.05
    assert real_scores["confidence"] > 0.95
    assert abs(real_scores["confidence"] - real_scores["real_confidence"]) < 0.01
    terms = real_scores["kl_by_attribute"]
    assert set(terms) == set(ATTRIBUTES)
    assert real_scores["attribute_kl"] == pytest.approx(sum(terms.values()))


def test_a_collapsed_generator_covers_one_mode(classifier, renders, real_scores):
    scores = coverage(np.repeat(renders[0][:1], N, axis=0), classifier, progress=False)
    assert scores["modes"] == 1
    assert scores["mode_coverage"] < 0.01
    assert scores["attribute_kl"] > 100 * real_scores["attribute_kl"]


def test_uniform_noise_fails_every_measure(classifier, real_scores):
    noise = np.random.default_rng(0).integers(0, 256, (N, 32, 32, 3), dtype=np.uint8)
    scores = coverage(noise, classifier, progress=False)
    assert scores["mode_coverage"] < 0.2
    assert scores["attribute_kl"] > 100 * real_scores["attribute_kl"]
    assert scores["confidence"] < real_scores["confidence"] - 0.03


def test_blurred_faces_lower_the_confidence(classifier, renders, real_scores):
    blurred = np.stack(
        [
            np.asarray(Image.fromarray(face).resize((8, 8), Image.BILINEAR).resize((32, 32)))
            for face in renders[0][:N]
        ]
    )
    scores = coverage(blurred, classifier, progress=False)
    assert scores["confidence"] < real_scores["confidence"] - 0.05
    assert scores["mode_coverage"] < 0.7 * real_scores["mode_coverage"]
    assert scores["attribute_kl"] > 10 * real_scores["attribute_kl"]


@pytest.mark.parametrize(("attribute", "value"), [("glasses", 1), ("beard", 2)])
def test_a_generator_that_never_draws_one_look_is_caught(
    classifier, renders, real_scores, attribute, value
):
    images, attributes = renders
    without = images[attributes[attribute] != value][:N]
    assert len(without) == N
    scores = coverage(without, classifier, progress=False)
    assert scores["attribute_kl"] > 10 * real_scores["attribute_kl"]
    by_attribute = scores["kl_by_attribute"]
    assert max(by_attribute, key=by_attribute.get) == attribute
    assert scores["modes"] < 0.95 * real_scores["modes"]
    assert scores["mode_coverage"] < real_scores["real_mode_coverage"] - 0.05


def test_without_a_classifier_the_cached_one_for_the_image_size_is_used(
    classifier, renders, real_scores, monkeypatch
):
    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier should have been used")

    monkeypatch.setattr(attributes_module, "_train", no_training)
    scores = coverage(renders[0][:N], progress=False)
    assert scores == real_scores


# -- the cache ---------------------------------------------------------------------------------


def test_a_cached_classifier_is_reused_not_retrained(count_training, tmp_path):
    first = attribute_classifier(16, progress=False, **SMALL)
    second = attribute_classifier(16, progress=False, **SMALL)
    assert len(count_training) == 1
    assert second.accuracy == first.accuracy
    for name, tensor in first.net.state_dict().items():
        torch.testing.assert_close(second.net.state_dict()[name], tensor)
    # Written atomically: one finished file, no temporary left behind.
    assert [path.suffix for path in tmp_path.iterdir()] == [".pt"]


def test_another_image_size_trains_its_own_classifier(count_training, tmp_path):
    attribute_classifier(16, progress=False, **SMALL)
    other = attribute_classifier(32, progress=False, **SMALL)
    assert len(count_training) == 2
    assert other.image_size == 32
    assert len(list(tmp_path.glob("*.pt"))) == 2


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign"])
def test_a_damaged_cache_file_is_retrained(count_training, tmp_path, damage):
    attribute_classifier(16, progress=False, **SMALL)
    (path,) = tmp_path.glob("*.pt")
    if damage == "garbage":
        path.write_bytes(b"not a checkpoint")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    else:
        torch.save({"state_dict": {}}, path)
    with pytest.warns(UserWarning, match="could not be used"):
        retrained = attribute_classifier(16, progress=False, **SMALL)
    assert len(count_training) == 2
    assert retrained.predict(np.zeros((2, 16, 16, 3), np.uint8))["skin"].shape == (2,)
    attribute_classifier(16, progress=False, **SMALL)
    assert len(count_training) == 2, "the retrained classifier replaces the damaged file"


def test_training_is_deterministic_and_leaves_torch_random_state_alone(monkeypatch, tmp_path):
    weights = []
    for folder in ("a", "b"):
        monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path / folder))
        state = torch.get_rng_state()
        weights.append(attribute_classifier(16, progress=False, **SMALL).net.state_dict())
        assert torch.equal(torch.get_rng_state(), state)
    for name, tensor in weights[0].items():
        torch.testing.assert_close(weights[1][name], tensor, rtol=0, atol=0)


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((4, 32, 32, 3), np.float32), "uint8"),
        (torch.zeros((4, 32, 32, 3), dtype=torch.uint8), "uint8 numpy"),
        (np.zeros((4, 3, 32, 32), np.uint8), r"\[N, S, S, 3\]"),
        (np.zeros((4, 32, 16, 3), np.uint8), "square"),
        (np.zeros((0, 32, 32, 3), np.uint8), "at least one"),
        (np.zeros((4, 24, 24, 3), np.uint8), "power of two"),
    ],
)
def test_bad_images_are_refused_with_a_clear_message(images, message):
    with pytest.raises(ConfigError, match=message):
        coverage(images, progress=False)


def test_images_at_another_size_than_the_classifier_are_refused(classifier):
    images = np.zeros((4, 64, 64, 3), np.uint8)
    with pytest.raises(ConfigError, match=r"attribute_classifier\(64\)"):
        coverage(images, classifier, progress=False)
    with pytest.raises(ConfigError, match="reads 32 px faces"):
        classifier.predict(images)


@pytest.mark.parametrize(
    "settings",
    [{"image_size": 48}, {"n_train": 10}, {"n_test": 0}, {"epochs": 0}, {"epochs": 1.5}],
)
def test_bad_training_settings_are_refused(settings):
    with pytest.raises(ConfigError):
        attribute_classifier(progress=False, **settings)
