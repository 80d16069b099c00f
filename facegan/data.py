"""Face images for training: sources, a decoded uint8 cache, and the data order."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from facegan.config import check_positive
from facegan.errors import DataError
from facegan.images import check_image_size, to_float

DEFAULT_SYNTHETIC_IMAGES = 20000
# Part of every cache key: bump it whenever decoding, cropping or resizing changes.
PREPROCESS_VERSION = "1"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CELEBA_PLACES = (
    Path("data/processed_celeba_small/celeba"),
    Path("data/processed-celeba-small.zip"),
    Path("data/img_align_celeba"),
    Path("data/img_align_celeba.zip"),
)
ACCEPTED_SOURCES = '"synthetic", "celeba", a folder of images, or a .zip of images'

Reader = Callable[[str], bytes]


class UnreadableImagesWarning(UserWarning):
    """Some image files could not be decoded and were left out."""


class FaceDataset(Dataset):
    """Decoded faces: `images` is uint8 [N, S, S, 3]; an item is float32 [3, S, S] in [-1, 1]."""

    def __init__(
        self,
        images: np.ndarray,
        source: str,
        attributes: dict[str, np.ndarray] | None = None,
        skipped: list[str] | None = None,
        *,
        key: str | None = None,
    ) -> None:
        self.images = images
        self.image_size = int(images.shape[1])
        self.source = source
        self.attributes = attributes
        self.skipped = list(skipped or [])
        # Names exactly these images (source, size, count, preprocessing): caches of
        # statistics about them, such as FID's reference, are keyed on it.
        self.key = key or f"{source}-{self.image_size}px-{len(images)}"

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        # np.array copies out of the read-only memory map, which torch cannot wrap.
        return to_float(torch.from_numpy(np.array(self.images[index])[None]))[0]


def scale(x: torch.Tensor, feature_range: tuple[float, float] = (-1, 1)) -> torch.Tensor:
    """Map images with values in [0, 1] onto feature_range."""
    low, high = feature_range
    return x * (high - low) + low


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of n samples in one epoch, a pure function of (seed, epoch)."""
    digest = hashlib.sha256(f"facegan epoch order {seed} {epoch}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
    return torch.randperm(n, generator=generator)


def decode_image(data: bytes, image_size: int) -> np.ndarray:
    """Decode one image file to uint8 [S, S, 3]: 8-bit RGB, centre square, resized."""
    try:
        with warnings.catch_warnings():
            # Per-file decoder warnings would repeat for every image; bombs are errors.
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                # JPEG can decode at 1/2..1/8 scale almost for free; keep 2x for the resize.
                image.draft("RGB", (2 * image_size, 2 * image_size))
                return _centre_square(_to_rgb(ImageOps.exif_transpose(image)), image_size)
    except Exception as error:  # Pillow raises many types on bad data; all mean unreadable.
        raise DataError(f"unreadable image ({type(error).__name__}: {error})") from error


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any mode: alpha is dropped and 16-bit values are scaled, not clipped."""
    if image.mode == "I" or image.mode.startswith("I;16"):
        wide = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.rint(wide / 257), 0, 255).astype(np.uint8))
    return image.convert("RGB")


def _centre_square(image: Image.Image, image_size: int) -> np.ndarray:
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    # Crop first: resizing with box= would let the filter blend in pixels outside the square.
    square = image.crop((left, top, left + side, top + side))
    return np.array(square.resize((image_size, image_size), Image.Resampling.LANCZOS))


def load_faces(
    source: str | os.PathLike,
    image_size: int = 32,
    n_images: int | None = None,
    seed: int = 0,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> FaceDataset:
    """Load faces from "synthetic", "celeba", a folder or a .zip, decoding once into a cache.

    Real images are converted to RGB, centre-cropped to a square and resized to image_size.
    n_images keeps the first n readable images in sorted order (synthetic: how many to draw).
    Unreadable files are skipped, listed in `.skipped` and reported in one warning.
    """
    image_size, n_images = _checked_settings(image_size, n_images)
    cache = cache_root(cache_dir)
    if isinstance(source, str) and source == "synthetic":
        return _load_synthetic(image_size, n_images, int(seed), cache, progress=progress)
    if isinstance(source, str) and source == "celeba":
        path = _find_celeba()
    else:
        path = Path(source).expanduser()
    faces = _load_real(path, image_size, n_images, cache, progress=progress)
    if faces.skipped:
        named = ", ".join(faces.skipped[:5])
        more = f" and {len(faces.skipped) - 5} more" if len(faces.skipped) > 5 else ""
        warnings.warn(
            f"skipped {len(faces.skipped)} unreadable image(s) in {faces.source}: {named}{more}",
            UnreadableImagesWarning,
            stacklevel=2,
        )
    return faces


def _checked_settings(image_size: int, n_images: int | None) -> tuple[int, int | None]:
    image_size = check_image_size(image_size)
    if n_images is not None:
        check_positive("n_images", n_images)
    return image_size, None if n_images is None else int(n_images)


def _find_celeba() -> Path:
    for place in CELEBA_PLACES:
        if place.exists():
            return place
    looked = ", ".join(str(Path.cwd() / place) for place in CELEBA_PLACES)
    raise DataError(
        f"CelebA was not found. Looked at: {looked}. Fetch it with `python -m facegan data "
        f"download celeba` (or `make data`), or put processed-celeba-small.zip "
        f"(the course zip) or img_align_celeba/ or img_align_celeba.zip (from the CelebA site) "
        f"under {Path.cwd() / 'data'}, or pass the path of a folder or .zip of face images."
    )


def _load_synthetic(
    image_size: int, n_images: int | None, seed: int, cache: Path, *, progress: bool
) -> FaceDataset:
    from facegan import synthfaces

    count = DEFAULT_SYNTHETIC_IMAGES if n_images is None else n_images
    key = {
        "kind": "synthetic",
        "image_size": image_size,
        "n_images": count,
        "seed": seed,
        "renderer": synthfaces.RENDERER_VERSION,
        "preprocess": PREPROCESS_VERSION,
    }
    npy = _cache_file(cache, f"synthetic-seed{seed}", key)
    faces = _read_cache(npy)
    if faces is None:
        attributes: dict[str, np.ndarray] = {}

        def render(out: np.ndarray) -> int:
            attributes.update(_render_into(out, seed, progress))
            return len(out)

        _write_images(npy, (count, image_size, image_size, 3), render)
        _write_meta(npy, f"synthetic faces (seed {seed})", [], attributes)
        faces = _read_cache(npy)
    return faces


def _render_into(out: np.ndarray, seed: int, progress: bool) -> dict[str, np.ndarray]:
    """Fill `out` with synthetic faces 0..N-1, in chunks; returns their attributes."""
    from facegan import synthfaces

    parts = []
    with tqdm(total=len(out), desc="rendering faces", unit="img", disable=not progress) as bar:
        for start in range(0, len(out), synthfaces.RENDER_CHUNK):
            stop = min(start + synthfaces.RENDER_CHUNK, len(out))
            out[start:stop], attributes = synthfaces.render_faces(
                stop - start, out.shape[1], seed, start
            )
            parts.append(attributes)
            bar.update(stop - start)
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _load_real(
    path: Path, image_size: int, n_images: int | None, cache: Path, *, progress: bool
) -> FaceDataset:
    if not path.exists():
        raise DataError(f"{path} does not exist. The data source must be {ACCEPTED_SOURCES}.")
    path = path.resolve()
    key = {
        **_fingerprint(path),
        "path": str(path),
        "image_size": image_size,
        "n_images": n_images,
        "preprocess": PREPROCESS_VERSION,
    }
    npy = _cache_file(cache, path.stem, key)
    faces = _read_cache(npy)
    if faces is None:
        with _open_images(path) as (names, read):
            if not names:
                raise DataError(
                    f"no images found in {path}: looked for {', '.join(IMAGE_EXTENSIONS)} files "
                    "(any letter case, in all subfolders)."
                )
            count = len(names) if n_images is None else min(n_images, len(names))
            skipped: list[str] = []

            def decode(out: np.ndarray) -> int:
                return _decode_into(out, names, read, skipped, progress=progress)

            if not _write_images(npy, (count, image_size, image_size, 3), decode):
                raise DataError(
                    f"none of the {len(skipped)} images in {path} could be read "
                    f"(e.g. {', '.join(skipped[:5])}); they may be damaged or not images."
                )
        _write_meta(npy, str(path), skipped, None)
        faces = _read_cache(npy)
    return faces


def is_image_name(name: str) -> bool:
    """An image by extension; macOS zip leftovers (__MACOSX/, ._name.jpg) are not images."""
    parts = name.split("/")
    return (
        name.lower().endswith(IMAGE_EXTENSIONS)
        and not parts[-1].startswith("._")
        and "__MACOSX" not in parts
    )


def _folder_images(folder: Path) -> list[str]:
    """Image files under folder as sorted relative POSIX paths."""
    names = (path.relative_to(folder).as_posix() for path in folder.rglob("*"))
    return sorted(name for name in names if is_image_name(name) and (folder / name).is_file())


def _fingerprint(path: Path) -> dict[str, object]:
    """What identifies the source's current contents, for the cache key."""
    if path.is_dir():
        digest = hashlib.sha256()
        for name in _folder_images(path):
            stat = (path / name).stat()
            digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return {"kind": "folder", "files": digest.hexdigest()}
    stat = path.stat()
    return {"kind": "zip", "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


@contextlib.contextmanager
def _open_images(path: Path) -> Iterator[tuple[list[str], Reader]]:
    """The sorted image names in a folder or zip, and a function reading one's bytes."""
    if path.is_dir():
        yield _folder_images(path), lambda name: _read_file(path / name)
        return
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise DataError(
            f"the zip file {path} could not be read ({error}). It may be damaged or only partly "
            f"downloaded: re-download it. The data source must be {ACCEPTED_SOURCES}."
        ) from error
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        names = sorted(info.filename for info in infos if is_image_name(info.filename))
        yield names, lambda name: _read_member(archive, name)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error}") from error


def _read_member(archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as error:
        raise DataError(f"cannot read {name} from the zip: {error}") from error


def _decode_into(
    out: np.ndarray, names: list[str], read: Reader, skipped: list[str], *, progress: bool
) -> int:
    """Decode images in order until `out` is full; returns how many were stored."""
    count = 0
    with tqdm(total=len(out), desc="decoding images", unit="img", disable=not progress) as bar:
        for name in names:
            if count == len(out):
                break
            try:
                out[count] = decode_image(read(name), out.shape[1])
            except DataError:
                skipped.append(name)
                continue
            count += 1
            bar.update()
    return count


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder for caches: cache_dir, else $FACEGAN_CACHE, else ~/.cache/facegan."""
    if cache_dir is None:
        cache_dir = os.environ.get("FACEGAN_CACHE") or Path.home() / ".cache" / "facegan"
    root = Path(cache_dir).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(
            f"cannot create the cache folder {root} ({error}); "
            "pass cache_dir or set FACEGAN_CACHE to a writable folder."
        ) from error
    return root


def _cache_file(cache: Path, label: str, key: dict[str, object]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[:40]
    return cache / f"{slug}-{key['image_size']}px-{digest}.npy"


def _read_cache(npy: Path) -> FaceDataset | None:
    """The cached dataset, or None when absent or incomplete (the .json is written last)."""
    meta_path = npy.with_suffix(".json")
    if not (npy.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        attributes = None
        if meta["attributes"]:
            with np.load(npy.with_suffix(".npz")) as saved:
                attributes = {name: saved[name] for name in saved.files}
        images = np.load(npy, mmap_mode="r")
    except (OSError, ValueError, KeyError):
        return None
    return FaceDataset(images, meta["source"], attributes, meta["skipped"], key=npy.stem)


def _write_meta(
    npy: Path, source: str, skipped: list[str], attributes: dict[str, np.ndarray] | None
) -> None:
    if attributes:
        write_atomic(npy.with_suffix(".npz"), lambda file: np.savez(file, **attributes))
    meta = {"source": source, "skipped": skipped, "attributes": bool(attributes)}
    write_atomic(npy.with_suffix(".json"), lambda file: file.write(json.dumps(meta).encode()))


def _write_images(npy: Path, shape: tuple[int, ...], fill: Callable[[np.ndarray], int]) -> int:
    """Write uint8 images via fill(out) -> count into `npy` atomically; returns the count.

    `out` is a memory-mapped file, so datasets larger than RAM can be decoded.
    Nothing is written when count is 0.
    """
    with _temp_beside(npy) as temp:
        out = np.lib.format.open_memmap(temp, mode="w+", dtype=np.uint8, shape=shape)
        count = fill(out)
        if count == len(out):
            out.flush()
            del out
            with open(temp, "rb+") as file:
                os.fsync(file.fileno())
            os.replace(temp, npy)
        elif count:
            write_atomic(npy, lambda file: np.save(file, out[:count]))
    return count


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file so that a crash leaves either the old file or the whole new one."""
    with _temp_beside(path) as temp:
        with open(temp, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)


@contextlib.contextmanager
def _temp_beside(path: Path) -> Iterator[Path]:
    """A fresh temporary file in path's folder, removed at the end unless renamed away."""
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)
