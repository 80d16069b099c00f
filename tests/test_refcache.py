"""The reference cache: file names, read-back only under the same meta, damaged files, naming."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from facegan import refcache

FOLDER = "test-refcache"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path))
    return tmp_path


def meta_for(key: str = "faces", n: int = 8) -> dict[str, object]:
    return refcache.reference_meta(key, image_size=16, n=n, extractor="stand-in", protocol="1")


def some_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"mu": rng.normal(size=4), "rows": rng.normal(size=(8, 4)).astype(np.float32)}


def test_the_file_name_is_the_key_size_n_and_the_meta_digest(cache):
    # Caches already on disk are found only while this name stays the same.
    meta = meta_for("CelebA / aligned: a key longer than forty characters, cut")
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
    expected = f"CelebA_aligned_a_key_longer_than_forty_c-16px-n8-{digest}.npz"
    assert refcache.cache_path(FOLDER, meta) == cache / FOLDER / expected


def test_written_arrays_read_back_with_their_meta_and_dtypes(cache):
    arrays = some_arrays()
    refcache.write_arrays(FOLDER, meta_for(), arrays)
    got = refcache.read_arrays(FOLDER, meta_for(), ("mu", "rows"))
    assert got is not None and got.keys() == arrays.keys()
    for name, array in arrays.items():
        assert got[name].dtype == array.dtype
        np.testing.assert_array_equal(got[name], array)
    with np.load(refcache.cache_path(FOLDER, meta_for())) as saved:
        assert json.loads(str(saved["meta"])) == meta_for()
    assert [path.name for path in (cache / FOLDER).iterdir()] == [
        refcache.cache_path(FOLDER, meta_for()).name
    ]  # no temporary file is left beside it


def test_another_meta_misses_even_under_the_same_file_name(cache):
    refcache.write_arrays(FOLDER, meta_for(n=8), some_arrays())
    assert refcache.read_arrays(FOLDER, meta_for(n=6), ("mu", "rows")) is None
    # A file whose stored meta differs from the one asked for is not used, wherever it lies.
    written, asked = (refcache.cache_path(FOLDER, meta_for(n=n)) for n in (8, 6))
    shutil.copy(written, asked)
    assert refcache.read_arrays(FOLDER, meta_for(n=6), ("mu", "rows")) is None


def test_a_damaged_or_incomplete_file_misses_and_a_write_replaces_it(cache):
    path = refcache.cache_path(FOLDER, meta_for())
    path.parent.mkdir()
    path.write_bytes(b"not an npz file")
    assert refcache.read_arrays(FOLDER, meta_for(), ("mu", "rows")) is None
    refcache.write_arrays(FOLDER, meta_for(), {"mu": np.zeros(4)})
    assert refcache.read_arrays(FOLDER, meta_for(), ("mu", "rows")) is None  # no "rows" array
    refcache.write_arrays(FOLDER, meta_for(), some_arrays())
    assert refcache.read_arrays(FOLDER, meta_for(), ("mu", "rows")) is not None


def test_an_extractor_is_named_by_its_name_else_its_qualname():
    class Named:
        name = "stand-in"

        def __call__(self, images: np.ndarray) -> np.ndarray:
            return images

    class Unnamed:
        def __call__(self, images: np.ndarray) -> np.ndarray:
            return images

    def features(images: np.ndarray) -> np.ndarray:
        return images

    assert refcache.extractor_name(Named()) == "stand-in"
    assert refcache.extractor_name(features) == features.__qualname__
    assert refcache.extractor_name(Unnamed()) == Unnamed.__qualname__
