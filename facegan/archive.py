"""Checks of a downloaded zip before it is used: checksum, soundness, names safe to unpack."""

from __future__ import annotations

import hashlib
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from facegan.data import is_image_name
from facegan.errors import DataError

READ_CHUNK = 1 << 20  # bytes per read, from a file, a zip member or the network


@dataclass(frozen=True)
class KnownCopy:
    """A published copy of a file: its size in bytes and its checksum."""

    size: int
    algorithm: str
    digest: str


def check_checksum(path: Path, copies: list[KnownCopy], progress: bool) -> None:
    """Refuse a file whose size is a known copy's but whose checksum is none of theirs."""
    for copy in copies:
        if file_digest(path, copy.algorithm, progress) == copy.digest:
            return
    names = ", ".join(f"{copy.algorithm} {copy.digest}" for copy in copies)
    raise DataError(
        f"{path.name} has the size of a known copy ({path.stat().st_size:,} bytes) but not its "
        f"checksum ({names}): the download is damaged."
    )


def file_digest(path: Path, algorithm: str, progress: bool) -> str:
    """The hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with (
        open(path, "rb") as file,
        tqdm(
            total=path.stat().st_size,
            desc=f"{algorithm} {path.name}",
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=not progress,
        ) as bar,
    ):
        while chunk := file.read(READ_CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def check_zip(path: Path, what: str, min_images: int, *, check_crcs: bool, progress: bool) -> int:
    """Refuse a zip that is damaged, unsafe to unpack or too small; returns its image count.

    what names the data set the zip should hold; a real copy holds at least min_images images.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            for info in members:
                check_member_name(path, info)
            images = sum(is_image_name(info.filename) for info in members)  # as the loader counts
            if images < min_images:
                raise DataError(
                    f"{path.name} holds {images:,} images; a real copy of the {what} "
                    f"holds at least {min_images:,}."
                )
            if check_crcs:
                _check_crcs(archive, members, path.name, progress)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise DataError(f"{path.name} is not a whole, sound zip ({error}).") from error
    return images


def check_member_name(path: Path, info: zipfile.ZipInfo) -> None:
    """Refuse a member whose name could escape the folder it is unpacked into."""
    name = info.filename.replace("\\", "/")
    problem = None
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        problem = "an absolute path"
    elif ".." in name.split("/"):
        problem = "a '..' that leads outside the folder"
    elif stat.S_ISLNK(info.external_attr >> 16):
        problem = "a symbolic link"
    if problem:
        raise DataError(
            f"{path.name} is refused: its member {info.filename!r} is {problem}, so unpacking "
            "it could write outside the target folder."
        )


def _check_crcs(
    archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], name: str, progress: bool
) -> None:
    """Read every member: zipfile compares each one's CRC-32 when its end is reached."""
    total = sum(info.file_size for info in members)
    with tqdm(
        total=total,
        desc=f"checking {name}",
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not progress,
    ) as bar:
        for info in members:
            try:
                with archive.open(info) as member:
                    while chunk := member.read(READ_CHUNK):
                        bar.update(len(chunk))
            except (zlib.error, NotImplementedError, RuntimeError) as error:
                damaged = f"{name}: member {info.filename!r} is damaged ({error})."
                raise DataError(damaged) from error
