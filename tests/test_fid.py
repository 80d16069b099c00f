"""FID and KID: the maths against independent computations, the wiring with a stand-in feature
extractor, and the reference cache."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import linalg

from facegan import fid
from facegan.errors import ConfigError, FaceGanError
from facegan.synthfaces import render_faces

# ---------------------------------------------------------------------------- Fréchet distance


def random_covariance(rng: np.random.Generator, dim: int) -> np.ndarray:
    a = rng.normal(size=(dim, dim))
    return a @ a.T / dim + 0.1 * np.eye(dim)


def symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_by_eigh(mu1, sigma1, mu2, sigma2) -> float:
    """Independent route: Tr (S1 S2)^(1/2) = Tr (S1^(1/2) S2 S1^(1/2))^(1/2), all symmetric."""
    root1 = symmetric_sqrt(sigma1)
    cross = np.sqrt(np.clip(linalg.eigvalsh(root1 @ sigma2 @ root1), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * cross)


def test_frechet_distance_with_equal_covariances_is_the_squared_mean_distance():
    rng = np.random.default_rng(0)
    sigma = random_covariance(rng, 6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    expected = float(((mu1 - mu2) ** 2).sum())
    assert fid.frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_diagonal_gaussians_has_a_closed_form():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.1, 3, size=5), rng.uniform(0.1, 3, size=5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("dim", [1, 4, 32])
def test_frechet_distance_matches_an_independent_eigh_computation(dim):
    rng = np.random.default_rng(dim)
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    sigma1, sigma2 = random_covariance(rng, dim), random_covariance(rng, dim)
    expected = frechet_by_eigh(mu1, sigma1, mu2, sigma2)
    got = fid.frechet_distance(mu1, sigma1, mu2, sigma2)
    assert got == pytest.approx(expected, rel=1e-8)
    assert fid.frechet_distance(mu1, sigma1, mu1, sigma1) == pytest.approx(0, abs=1e-8)


def test_frechet_distance_of_a_point_mass_takes_the_offset_path_and_stays_finite():
    # A collapsed generator has covariance zero: the product is singular, scipy warns, and the
    # eps offset makes it computable. The answer is ||mu1 - mu2||^2 + Tr(sigma2).
    rng = np.random.default_rng(2)
    sigma = random_covariance(rng, 8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing leaks to the caller
        got = fid.frechet_distance(mu1, np.zeros((8, 8)), mu2, sigma)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(sigma)
    assert got == pytest.approx(expected, rel=1e-3)


def test_a_singular_product_is_retried_with_eps_on_both_diagonals(monkeypatch):
    real_sqrtm, products = linalg.sqrtm, []

    def recording_sqrtm(a):
        products.append(a)
        return real_sqrtm(a)

    monkeypatch.setattr(linalg, "sqrtm", recording_sqrtm)
    sigma = np.diag([1.0, 2.0, 3.0])
    fid.frechet_distance(np.zeros(3), np.zeros((3, 3)), np.zeros(3), sigma)
    offset = fid.FID_EPS * np.eye(3)
    assert len(products) == 2
    np.testing.assert_array_equal(products[1], offset @ (sigma + offset))


def test_frechet_distance_drops_a_tiny_imaginary_part(monkeypatch):
    real_sqrtm = linalg.sqrtm
    monkeypatch.setattr(linalg, "sqrtm", lambda a: real_sqrtm(a) + 1e-9j)
    sigma = np.diag([1.0, 4.0])
    got = fid.frechet_distance(np.zeros(2), sigma, np.ones(2), np.eye(2))
    assert isinstance(got, float)
    assert got == pytest.approx(2 + 5 + 2 - 2 * (1 + 2))


def test_frechet_distance_refuses_a_large_imaginary_part():
    # diag(-1, 1) is no covariance: the square root of the product is imaginary.
    with pytest.raises(FaceGanError, match="imaginary"):
        fid.frechet_distance(np.zeros(2), np.diag([-1.0, 1.0]), np.zeros(2), np.eye(2))


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ConfigError, match="one D"):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


# ------------------------------------------------------------------------------------ KID


def kernel(x: np.ndarray, y: np.ndarray) -> float:
    return float((x @ y / len(x) + 1) ** 3)


def mmd2_by_pairs(x: np.ndarray, y: np.ndarray, unbiased: bool = True) -> float:
    """Direct O(n^2) MMD^2, one kernel evaluation per pair of points."""
    m = len(x)
    skip_self = 1 if unbiased else 0
    within_x = sum(kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j or not unbiased)
    within_y = sum(kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j or not unbiased)
    across = sum(kernel(x[i], y[j]) for i in range(m) for j in range(m))
    return (within_x + within_y) / (m * (m - skip_self)) - 2 * across / m**2


def test_kid_matches_a_direct_pairwise_computation():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(25, 4)), rng.normal(0.3, 1.2, size=(25, 4))
    kid, kid_std = fid.kernel_inception_distance(x, y, subsets=5, subset_size=1000)
    assert kid == pytest.approx(mmd2_by_pairs(x, y), rel=1e-10)
    assert kid_std == 0.0  # both sides capped at their full size: every draw is the same


def test_kid_draws_subsets_when_the_sets_are_larger():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(200, 4)), rng.normal(0.5, 1.0, size=(150, 4))
    kid, kid_std = fid.kernel_inception_distance(x, y, subsets=20, subset_size=50, seed=1)
    assert kid_std > 0
    assert fid.kernel_inception_distance(x, y, subsets=20, subset_size=50, seed=1) == (kid, kid_std)
    assert fid.kernel_inception_distance(x, y, subsets=20, subset_size=50, seed=2) != (kid, kid_std)
    # subset_size is capped at the smaller side (150), so the larger side is still sampled.
    _, capped_std = fid.kernel_inception_distance(x, y, subsets=20, subset_size=1000)
    assert capped_std > 0


def test_kid_is_near_zero_for_one_distribution_and_positive_for_a_shift():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(2, 600, 16))
    same, same_std = fid.kernel_inception_distance(a, b, subsets=50, subset_size=200)
    shifted, shifted_std = fid.kernel_inception_distance(a, b + 0.5, subsets=50, subset_size=200)
    assert abs(same) < 3 * same_std
    assert shifted > 10 * shifted_std > 0
    assert shifted > 20 * abs(same)


def test_kid_is_unbiased_where_the_plug_in_estimator_is_not():
    rng = np.random.default_rng(6)
    unbiased, biased = [], []
    for _ in range(400):
        x, y = rng.normal(size=(2, 12, 3))
        unbiased.append(fid.kernel_inception_distance(x, y, subsets=1, subset_size=12)[0])
        biased.append(mmd2_by_pairs(x, y, unbiased=False))
    standard_error = np.std(unbiased) / np.sqrt(len(unbiased))
    assert abs(np.mean(unbiased)) < 3 * standard_error
    assert np.mean(biased) > 10 * np.std(biased) / np.sqrt(len(biased))


def test_kid_rejects_bad_features():
    with pytest.raises(ConfigError, match="one D"):
        fid.kernel_inception_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ConfigError, match="at least 2"):
        fid.kernel_inception_distance(np.zeros((1, 3)), np.zeros((5, 3)))


# ----------------------------------------------------- the wiring, with a stand-in extractor


def cell_means(values: np.ndarray, cells: int) -> np.ndarray:
    n, size = values.shape[:2]
    k = size // cells
    blocks = values.reshape(n, cells, k, cells, k, *values.shape[3:])
    return blocks.mean(axis=(2, 4)).reshape(n, -1)


class ColourGradient:
    """Stand-in for Inception: mean colour of the face's centre (2x2 cells) and gradient energy
    on a 4x4 grid; 28 features, deterministic, fast."""

    name = "test-colour-gradient"

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.calls += 1
        x = images.astype(np.float64) / 255
        size = x.shape[1]
        centre = x[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4]
        grey = x.mean(axis=-1)
        gradient = np.abs(np.diff(grey, axis=2))[:, :-1] + np.abs(np.diff(grey, axis=1))[:, :, :-1]
        gradient = np.pad(gradient, ((0, 0), (0, 1), (0, 1)))
        return np.concatenate([cell_means(centre, 2), cell_means(gradient, 4)], axis=1)


N = 300  # images per set: small, but above the stand-in's 28 feature dimensions


@pytest.fixture(scope="module")
def scores() -> dict[str, dict]:
    """FID/KID of real and of three kinds of bad 'generators' against one reference set.

    Faces 0..N-1 are the reference, N..2N-1 the real sample, the bad ones come from 2N on.
    """
    images, attributes = render_faces(4 * N, image_size=32, seed=0)
    rest = images[2 * N :]
    generated = {
        "real": images[N : 2 * N],
        "collapsed": np.repeat(rest[:1], N, axis=0),
        "noise": np.random.default_rng(0).integers(0, 256, size=(N, 32, 32, 3), dtype=np.uint8),
        # Never draws the palest skin tone; the stand-in's features see skin colour.
        "never_palest_skin": rest[attributes["skin"][2 * N :] != 0][:N],
    }
    assert len(generated["never_palest_skin"]) == N
    extractor = ColourGradient()
    reference = fid.reference_statistics("test-synthetic", images[:N], extractor, progress=False)
    return {
        name: fid.fid_kid(sample, reference, extractor, progress=False)
        for name, sample in generated.items()
    }


def test_scores_have_the_documented_shape(scores):
    for result in scores.values():
        assert set(result) == {"fid", "kid", "kid_std", "n"}
        assert result["n"] == N
        assert all(isinstance(result[k], float) for k in ("fid", "kid", "kid_std"))


@pytest.mark.parametrize("bad", ["collapsed", "noise", "never_palest_skin"])
def test_bad_generators_score_clearly_worse_than_real_data(scores, bad):
    real, worse = scores["real"], scores[bad]
    assert worse["fid"] > 2 * real["fid"]
    assert worse["kid"] > 2 * abs(real["kid"])
    assert worse["kid"] > 0


def test_fidelity_metrics_with_a_stand_in_gives_the_same_numbers(scores, monkeypatch, tmp_path):
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path))
    images, _ = render_faces(2 * N, image_size=32, seed=0)
    got = fid.fidelity_metrics(
        images[N:], "test-synthetic", lambda: images[:N], ColourGradient(), progress=False
    )
    assert got == scores["real"]


def test_feature_extraction_runs_in_batches():
    extractor = ColourGradient()
    images = np.zeros((2 * fid.BATCH_SIZE + 50, 16, 16, 3), dtype=np.uint8)
    features = fid.image_features(images, extractor, progress=False)
    assert features.shape == (len(images), 28) and features.dtype == np.float64
    assert extractor.calls == 3


def test_too_few_images_is_a_config_error_and_few_warn(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path))
    images, _ = render_faces(20, image_size=16, seed=0)
    with pytest.raises(ConfigError, match="at least 2"):
        fid.reference_statistics("tiny", images[:1], ColourGradient(), progress=False)
    with pytest.warns(fid.SmallSampleWarning, match="not full rank"):
        reference = fid.reference_statistics("few", images[:10], ColourGradient(), progress=False)
    with pytest.warns(fid.SmallSampleWarning):
        result = fid.fid_kid(images[10:], reference, ColourGradient(), progress=False)
    assert np.isfinite(result["fid"])


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((4, 16, 16, 3), dtype=np.float32), "uint8"),
        (np.zeros((4, 3, 16, 16), dtype=np.uint8), "NCHW"),
        (np.zeros((4, 16, 16, 1), dtype=np.uint8), r"\[N, S, S, 3\]"),
        (np.zeros((4, 16, 12, 3), dtype=np.uint8), "square"),
    ],
)
def test_bad_images_are_config_errors(images, message):
    with pytest.raises(ConfigError, match=message):
        fid.fidelity_metrics(images, "k", images, ColourGradient(), progress=False)


def test_mismatched_reference_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path))
    small, _ = render_faces(40, image_size=16, seed=0)
    large, _ = render_faces(40, image_size=32, seed=0)
    reference = fid.reference_statistics("small", small, ColourGradient(), progress=False)
    with pytest.raises(ConfigError, match="one size"):
        fid.fid_kid(large, reference, ColourGradient(), progress=False)

    class Other(ColourGradient):
        name = "another-extractor"

    with pytest.raises(ConfigError, match="same extractor"):
        fid.fid_kid(small, reference, Other(), progress=False)


# --------------------------------------------------------------------- the reference cache


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return render_faces(60, image_size=16, seed=0)[0]


def test_reference_statistics_are_cached(cache, faces):
    extractor = ColourGradient()
    first = fid.reference_statistics("faces", faces, extractor, progress=False)
    assert extractor.calls == 1
    made = []
    second = fid.reference_statistics(
        "faces", lambda: made.append(1) or faces, extractor, progress=False, image_size=16, n=60
    )
    assert extractor.calls == 1 and not made  # neither recomputed nor re-rendered
    np.testing.assert_array_equal(second.sigma, first.sigma)
    np.testing.assert_array_equal(second.kid_features, first.kid_features)
    assert list((cache / fid.CACHE_FOLDER).glob("*.npz"))


@pytest.mark.parametrize(
    "change", ["key", "n", "extractor"], ids=["key", "image count", "extractor name"]
)
def test_a_changed_key_recomputes(cache, faces, change):
    extractor = ColourGradient()
    fid.reference_statistics("faces", faces, extractor, progress=False)
    key, images = "faces", faces
    if change == "key":
        key = "other-faces"
    elif change == "n":
        images = faces[:50]
    else:
        extractor.name = "renamed-extractor"
    fid.reference_statistics(key, images, extractor, progress=False)
    assert extractor.calls == 2


def test_a_corrupt_cache_file_is_recomputed(cache, faces):
    extractor = ColourGradient()
    fid.reference_statistics("faces", faces, extractor, progress=False)
    (path,) = (cache / fid.CACHE_FOLDER).glob("*.npz")
    path.write_bytes(b"not an npz file")
    stats = fid.reference_statistics("faces", faces, extractor, progress=False)
    assert extractor.calls == 2 and stats.mu.shape == (28,)
    fid.reference_statistics("faces", faces, extractor, progress=False)
    assert extractor.calls == 2  # the rewritten file is good


def test_a_callable_reference_needs_its_size_and_count(cache, faces):
    with pytest.raises(ConfigError, match="image_size and n"):
        fid.reference_statistics("faces", lambda: faces, ColourGradient(), progress=False)
    with pytest.raises(ConfigError, match="60 at 16 px"):
        fid.reference_statistics(
            "faces", lambda: faces, ColourGradient(), progress=False, image_size=16, n=50
        )


def test_kid_reference_features_are_a_fixed_subset(monkeypatch, cache, faces):
    monkeypatch.setattr(fid, "KID_REFERENCE_FEATURES", 25)
    stats = fid.reference_statistics("faces", faces, ColourGradient(), progress=False)
    assert stats.kid_features.shape == (25, 28) and stats.kid_features.dtype == np.float32
    again = fid.reference_statistics("faces-again", faces, ColourGradient(), progress=False)
    np.testing.assert_array_equal(again.kid_features, stats.kid_features)
