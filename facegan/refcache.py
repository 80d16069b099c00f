"""Reference-set arrays (feature statistics, descriptors), computed once and cached on disk.

An entry is one .npz under cache_root()/<folder> holding `meta` (JSON) beside named arrays.
Its meta records what the arrays were computed from: the data set's key, image size, N, the
extractor's name and the measure's protocol version. The file name is derived from the meta,
and a file is used only when the meta stored in it equals the one asked for, so arrays made
under other settings are never mixed in. A damaged file is recomputed and replaced.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facegan.data import cache_root, write_atomic

Arrays = dict[str, np.ndarray]


def extractor_name(extractor: Callable[[np.ndarray], np.ndarray]) -> str:
    """The name a cache entry records: the extractor's `name`, else its (class's) qualname."""
    name = getattr(extractor, "name", None) or getattr(extractor, "__qualname__", None)
    return str(name or type(extractor).__qualname__)


def reference_meta(
    key: str, *, image_size: int, n: int, extractor: str, protocol: str
) -> dict[str, object]:
    """What a reference entry is keyed by; any change in it misses the cache."""
    return {
        "key": key,
        "image_size": int(image_size),
        "n": int(n),
        "extractor": extractor,
        "protocol": protocol,
    }


def cache_path(folder: str, meta: dict[str, object]) -> Path:
    """cache_root()/folder/<key slug>-<S>px-n<N>-<sha256 of meta>.npz."""
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(meta["key"]))[:40]
    return cache_root() / folder / f"{slug}-{meta['image_size']}px-n{meta['n']}-{digest}.npz"


def read_arrays(folder: str, meta: dict[str, object], names: tuple[str, ...]) -> Arrays | None:
    """The arrays `names` cached for `meta`, or None when absent, damaged or made under another
    meta (then the caller computes them and writes them back, replacing the file)."""
    path = cache_path(folder, meta)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            if json.loads(str(saved["meta"])) != meta:
                return None
            return {name: saved[name] for name in names}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # a damaged cache file is recomputed and replaced


def write_arrays(folder: str, meta: dict[str, object], arrays: Arrays) -> None:
    """Cache `arrays` for `meta`, atomically: a crash leaves the old file or the whole new one."""
    path = cache_path(folder, meta)
    path.parent.mkdir(exist_ok=True)
    write_atomic(path, lambda file: np.savez(file, meta=np.array(json.dumps(meta)), **arrays))
