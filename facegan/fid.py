"""Fréchet Inception Distance (FID) and Kernel Inception Distance (KID) under one fixed protocol.

FID and KID numbers can be compared only when they were measured the same way, so the way is
fixed here and versioned (PROTOCOL_VERSION):

- Images are uint8 RGB at the training size, NHWC as facegan stores them. Real and generated
  images take the same path: uint8 NHWC -> uint8 NCHW -> torch-fidelity's InceptionV3
  (FeatureExtractorInceptionV3, the TF1 Inception of 2015-12-05), which resizes to 299x299
  itself, TF1-style bilinear. facegan never resizes for the metric.
- Features: the 2048-d pool features (inception.FEATURE), for FID and for KID alike.
- N: DEFAULT_N generated images (10,000); FULL_N (50,000) for numbers to set beside papers.
  FID is biased upward at small N, and with N <= 2048 the 2048-d covariance is not full rank
  (a SmallSampleWarning says so). The reference set's N is part of its cache key.
- FID = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) in float64, with scipy's sqrtm.
- KID = unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3: the mean and standard
  deviation over KID_SUBSETS subsets of KID_SUBSET_SIZE images from each side (seed 0).
- Reference statistics (mu, sigma and a fixed, seeded subset of at most
  KID_REFERENCE_FEATURES reference features for KID) are computed once per dataset and cached
  under facegan.data.cache_root(), keyed by the caller's dataset key, image size, N, feature
  extractor and PROTOCOL_VERSION.

The Inception weights are never downloaded (facegan.inception finds them). Without them the
metrics are reported as unavailable, with the reason and the file to place; never as a number.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import linalg
from tqdm.auto import tqdm

from facegan.errors import ConfigError, FaceGanError
from facegan.images import check_face_images
from facegan.inception import InceptionUnavailable, inception_extractor
from facegan.refcache import extractor_name, read_arrays, reference_meta, write_arrays

# The protocol. Bump PROTOCOL_VERSION whenever a choice below changes: cached reference
# statistics are keyed on it, so old ones are not mixed with new.
PROTOCOL_VERSION = "1"
DEFAULT_N = 10_000
FULL_N = 50_000
BATCH_SIZE = 200
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_SEED = 0
KID_REFERENCE_FEATURES = 10_000
KID_REFERENCE_SEED = 0
# Added to both covariances' diagonals when their product is singular, as in pytorch-fid.
FID_EPS = 1e-6
# sqrtm of a product of covariances is real in exact arithmetic; a larger imaginary part on its
# diagonal means the statistics are broken, not rounding.
IMAGINARY_TOLERANCE = 1e-3

CACHE_FOLDER = "fid"


class SmallSampleWarning(UserWarning):
    """Too few images for a full-rank covariance: FID is computable but not comparable."""


class FeatureExtractor(Protocol):
    """Maps uint8 images [B, S, S, 3] to features [B, D] float64.

    An extractor may carry a `name` attribute; reference statistics are cached per name (the
    class or function name otherwise), so stand-ins should name themselves distinctly.
    """

    def __call__(self, images_uint8_nhwc: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ReferenceStats:
    """What FID and KID need from the reference set, as cached."""

    key: str
    image_size: int
    n: int
    extractor: str
    mu: np.ndarray  # [D] float64
    sigma: np.ndarray  # [D, D] float64
    kid_features: np.ndarray  # [min(n, KID_REFERENCE_FEATURES), D] float32


# Features and statistics ------------------------------------------------------------------


def _check_images(images: object, what: str, minimum: int = 2) -> None:
    check_face_images(images, what)
    if len(images) < minimum:
        raise ConfigError(
            f"{what}: FID and KID need at least {minimum} images, got {len(images)}; use "
            f"{DEFAULT_N} (the protocol's default) for numbers worth comparing."
        )


def image_features(
    images: np.ndarray, extractor: FeatureExtractor, progress: bool = True
) -> np.ndarray:
    """Features [N, D] float64 of uint8 images [N, S, S, 3], BATCH_SIZE images at a time."""
    _check_images(images, "images", minimum=1)
    chunks = []
    with tqdm(
        total=len(images), desc=extractor_name(extractor), unit="img", disable=not progress
    ) as bar:
        for start in range(0, len(images), BATCH_SIZE):
            batch = images[start : start + BATCH_SIZE]
            features = np.asarray(extractor(batch), dtype=np.float64)
            if features.ndim != 2 or len(features) != len(batch):
                raise FaceGanError(
                    f"the feature extractor returned shape {features.shape} for {len(batch)} "
                    "images; it must return one feature row per image, [N, D]."
                )
            if not np.isfinite(features).all():
                raise FaceGanError("the feature extractor returned NaN or infinite features.")
            chunks.append(features)
            bar.update(len(batch))
    return np.concatenate(chunks)


def _statistics(features: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    n, dim = features.shape
    if n <= dim:
        warnings.warn(
            f"{what}: {n} images for {dim}-d features, so the covariance is not full rank and "
            f"FID is inflated; use more than {dim} images ({DEFAULT_N} is the protocol's default).",
            SmallSampleWarning,
            stacklevel=3,
        )
    return features.mean(axis=0), np.cov(features, rowvar=False)


# The two distances ------------------------------------------------------------------------


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), computed in float64."""
    mu1, mu2 = (np.atleast_1d(np.asarray(mu, dtype=np.float64)) for mu in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(s, dtype=np.float64)) for s in (sigma1, sigma2))
    dim = mu1.shape[0]
    if mu1.shape != (dim,) or mu2.shape != (dim,) or {sigma1.shape, sigma2.shape} != {(dim, dim)}:
        raise ConfigError(
            f"frechet_distance needs two means of shape [D] and two covariances [D, D] with "
            f"one D; got {mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}."
        )
    diff = mu1 - mu2
    covmean = _sqrtm_product(sigma1, sigma2)
    if np.iscomplexobj(covmean):
        imaginary = np.abs(np.diagonal(covmean).imag).max()
        if imaginary > IMAGINARY_TOLERANCE:
            raise FaceGanError(
                f"the FID matrix square root has an imaginary part of {imaginary:.3g}, so the "
                "feature statistics are degenerate; compute them from more images."
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _sqrtm_product(sigma1: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    """(sigma1 sigma2)^(1/2); retried with FID_EPS on both diagonals if the product is singular."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", linalg.LinAlgWarning)
        try:
            root = linalg.sqrtm(sigma1 @ sigma2)
            if np.isfinite(root).all():
                return root
        except linalg.LinAlgWarning:
            pass  # scipy found the product singular: fall through to the offset
    offset = FID_EPS * np.eye(len(sigma1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        return linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))


def kernel_inception_distance(
    features_a: np.ndarray,
    features_b: np.ndarray,
    *,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = KID_SEED,
) -> tuple[float, float]:
    """KID: mean and std over `subsets` draws of the unbiased MMD^2, cubic polynomial kernel.

    Each draw takes m = min(subset_size, len(a), len(b)) rows from each side without
    replacement. When m is capped at a side's full size, every draw holds that whole side; when
    both are, every draw is the same, so one is computed and the std is 0.
    """
    a, b = (np.asarray(f, dtype=np.float64) for f in (features_a, features_b))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ConfigError(
            f"KID needs two feature arrays [N, D] with one D, got {a.shape} and {b.shape}."
        )
    if subsets < 1 or subset_size < 2:
        raise ConfigError(
            f"KID needs subsets >= 1 and subset_size >= 2, got {subsets}, {subset_size}."
        )
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ConfigError(
            f"KID needs at least 2 feature rows on each side, got {len(a)} and {len(b)}."
        )
    if m == len(a) == len(b):
        return _unbiased_mmd2(a, b), 0.0  # every draw would hold the same rows
    rng = np.random.default_rng(seed)
    mmds = np.empty(subsets)
    for draw in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        mmds[draw] = _unbiased_mmd2(x, y)
    return float(mmds.mean()), float(mmds.std())


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    base = x @ y.T / x.shape[1] + 1.0
    return base * base * base  # ten times faster than base ** 3


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2: the within-set kernel means leave out each point paired with itself."""
    m = len(x)
    k_xx, k_yy = _polynomial_kernel(x, x), _polynomial_kernel(y, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * _polynomial_kernel(x, y).mean())


# Reference statistics, cached -------------------------------------------------------------


def reference_statistics(
    key: str,
    images: np.ndarray | Callable[[], np.ndarray],
    extractor: FeatureExtractor,
    progress: bool = True,
    *,
    image_size: int | None = None,
    n: int | None = None,
) -> ReferenceStats:
    """The reference set's statistics, computed once and cached under cache_root().

    `key` names the dataset (for example "synthetic-seed0" or "celeba"); the cache is keyed by
    it with the image size, N, the extractor's name and PROTOCOL_VERSION. `images` is the uint8
    [N, S, S, 3] array, or a callable returning it, called only when the cache misses; a
    callable needs `image_size` and `n`, which its images must match.
    """
    if not isinstance(key, str) or not key.strip():
        raise ConfigError(
            f"the reference key must be a non-empty string naming the data, got {key!r}."
        )
    if callable(images):
        if image_size is None or n is None:
            raise ConfigError(
                "reference images given as a callable need image_size and n, which key the "
                "cache before the images are made."
            )
    else:
        _check_images(images, "reference images")
        image_size = image_size or images.shape[1]
        n = n or len(images)
        _check_matches(images, image_size, n)
    name = extractor_name(extractor)
    meta = reference_meta(
        key, image_size=image_size, n=n, extractor=name, protocol=PROTOCOL_VERSION
    )
    arrays = read_arrays(CACHE_FOLDER, meta, ("mu", "sigma", "kid_features"))
    if arrays is None or not _usable_statistics(arrays):
        if callable(images):
            images = images()
            _check_images(images, "reference images")
            _check_matches(images, image_size, n)
        features = image_features(images, extractor, progress)
        mu, sigma = _statistics(features, "reference images")
        chosen = _kid_reference_rows(len(features))
        # float32 halves the cache and loses nothing from Inception, which computes in float32.
        arrays = {"mu": mu, "sigma": sigma, "kid_features": features[chosen].astype(np.float32)}
        write_arrays(CACHE_FOLDER, meta, arrays)
    return ReferenceStats(
        key, int(image_size), int(n), name, arrays["mu"], arrays["sigma"], arrays["kid_features"]
    )


def _check_matches(images: np.ndarray, image_size: int, n: int) -> None:
    if images.shape[1] != image_size or len(images) != n:
        raise ConfigError(
            f"the reference images are {len(images)} at {images.shape[1]} px, but {n} at "
            f"{image_size} px were asked for; the protocol compares images at the training "
            "size, so give reference images of that size and count."
        )


def _kid_reference_rows(n: int) -> np.ndarray:
    """A fixed, seeded subset of rows kept for KID, in their original order."""
    if n <= KID_REFERENCE_FEATURES:
        return np.arange(n)
    rng = np.random.default_rng(KID_REFERENCE_SEED)
    return np.sort(rng.choice(n, KID_REFERENCE_FEATURES, replace=False))


def _usable_statistics(arrays: dict[str, np.ndarray]) -> bool:
    """Whether cached mu [D], sigma [D, D] and KID features [M, D] agree on one D."""
    mu, sigma, kid = arrays["mu"], arrays["sigma"], arrays["kid_features"]
    dim = mu.shape[0] if mu.ndim == 1 else -1
    return sigma.shape == (dim, dim) and kid.ndim == 2 and kid.shape[1] == dim


# Entry points -----------------------------------------------------------------------------


def fid_kid(
    generated: np.ndarray,
    reference: ReferenceStats,
    extractor: FeatureExtractor,
    progress: bool = True,
) -> dict:
    """FID and KID of uint8 images [N, S, S, 3] against reference statistics.

    Returns {"fid": float, "kid": float, "kid_std": float, "n": N}.
    """
    _check_images(generated, "generated images")
    if generated.shape[1] != reference.image_size:
        raise ConfigError(
            f"the generated images are {generated.shape[1]} px but the reference statistics "
            f"are for {reference.image_size} px; the protocol compares images at one size."
        )
    name = extractor_name(extractor)
    if name != reference.extractor:
        raise ConfigError(
            f"the reference statistics were made with the feature extractor "
            f"{reference.extractor!r}, not {name!r}; compute both with the same extractor."
        )
    features = image_features(generated, extractor, progress)
    mu, sigma = _statistics(features, "generated images")
    fid = frechet_distance(mu, sigma, reference.mu, reference.sigma)
    kid, kid_std = kernel_inception_distance(features, reference.kid_features)
    return {"fid": fid, "kid": kid, "kid_std": kid_std, "n": len(generated)}


def fidelity_metrics(
    generated: np.ndarray,
    reference_key: str,
    reference_images: np.ndarray | Callable[[], np.ndarray],
    extractor: FeatureExtractor | None = None,
    *,
    progress: bool = True,
    reference_n: int | None = None,
) -> dict:
    """FID and KID in one call, with Inception unless `extractor` is given.

    When Inception is unavailable, returns {"fid": None, "kid": None, "kid_std": None, "n": N,
    "fid_unavailable": reason}. A callable `reference_images` must make reference_n images
    (default: as many as `generated`) at the generated images' size.
    """
    _check_images(generated, "generated images")
    if extractor is None:
        try:
            extractor = inception_extractor()
        except InceptionUnavailable as error:
            return {
                "fid": None,
                "kid": None,
                "kid_std": None,
                "n": len(generated),
                "fid_unavailable": str(error),
            }
    if reference_n is None and callable(reference_images):
        reference_n = len(generated)
    reference = reference_statistics(
        reference_key,
        reference_images,
        extractor,
        progress,
        image_size=generated.shape[1],
        n=reference_n,
    )
    return fid_kid(generated, reference, extractor, progress)
