"""Fetch CelebA into data/, where load_faces("celeba") looks: sources in turn, resumable, checked.

Each source is downloaded onto `<file>.part` (resumed with HTTP Range requests after a
break), checked, and only then renamed into place, so the loader never sees half a file.
The zip is kept as it is: the loader reads zips directly, and the archive's member names
are checked so that unpacking it by hand is safe too.
"""

from __future__ import annotations

import html
import http.client
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from facegan.archive import READ_CHUNK, KnownCopy, check_checksum, check_zip
from facegan.data import CELEBA_PLACES
from facegan.errors import ConfigError, DataError

URLS_ENV = "FACEGAN_CELEBA_URLS"
USER_AGENT = "facegan (CelebA download)"
TIMEOUT_S = 60
ATTEMPTS = 4  # tries per source while a transfer keeps breaking off, each resuming the last
RETRY_WAIT_S = 2.0
_PAGE_LIMIT = 1 << 20  # how much of a web page (or an error body) is read to judge it
_HTML_START = re.compile(rb"\s*(<!doctype html|<html|<head|<body|<meta|<title)", re.IGNORECASE)
_QUOTA_PHRASES = (
    "quota exceeded",
    "too many users have viewed or downloaded",
    "can't view or download this file at this time",
)


@dataclass(frozen=True)
class Source:
    """One place CelebA can be fetched from, and what a good copy of it looks like."""

    name: str
    url: str
    filename: str  # saved as <data_dir>/<filename>, one of the places the loader looks
    min_images: int  # a real copy holds at least this many images
    known_copies: tuple[KnownCopy, ...] = ()
    manual_url: str = ""  # where a person can fetch it by hand, when it differs from url


# The course's preprocessed set. Copies of other sizes have circulated, so a size that
# matches no known copy is checked by structure instead, with a warning.
COURSE_ZIP = Source(
    name="course zip",
    url="https://s3.amazonaws.com/video.udacity-data.com/topher/2018/November/"
    "5be7eb6f_processed-celeba-small/processed-celeba-small.zip",
    filename="processed-celeba-small.zip",
    min_images=10_000,
    known_copies=(
        KnownCopy(
            247_694_507,
            "sha256",
            "2cd4fbba4b618faeb4be18c69da3a68ff6a163057d12ff321cb044fc51f416d3",
        ),
    ),
)
# The official aligned set on Google Drive: the file id, size and md5 torchvision's CelebA
# dataset uses. drive.usercontent.google.com with confirm=t skips Drive's virus-scan page
# for large files; if that page comes anyway, its download form is followed.
_DRIVE_ID = "0B7EVK8r0v71pZjFTYXZWM3FlRnM"
OFFICIAL_ZIP = Source(
    name="official aligned CelebA (Google Drive)",
    url=f"https://drive.usercontent.google.com/download?id={_DRIVE_ID}&export=download&confirm=t",
    filename="img_align_celeba.zip",
    min_images=200_000,
    known_copies=(KnownCopy(1_443_490_838, "md5", "00d2c5bc6d35e252742224ab0c1e8fcb"),),
    manual_url=f"https://drive.google.com/uc?id={_DRIVE_ID}&export=download "
    "(or the CelebA site, https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html)",
)
# No hub mirror: the copies of img_align_celeba.zip found on dataset hubs are personal
# uploads with no stated provenance or upkeep.
CELEBA_SOURCES = (COURSE_ZIP, OFFICIAL_ZIP)


class UnverifiedCopyWarning(UserWarning):
    """A download matches no known copy, so it was checked by structure, not by checksum."""


class SourceFailedWarning(UserWarning):
    """One source failed and the next one is being tried."""


class _SourceFailed(Exception):
    """This source did not give a usable file; `unreachable` means no connection at all."""

    def __init__(self, reason: str, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable


class _TransferBroke(_SourceFailed):
    """The transfer stopped part-way: the .part file is kept and can be resumed."""


class _Restart(_TransferBroke):
    """The .part file cannot be resumed from: it is dropped and the next try starts afresh."""


def download_celeba(
    data_dir: str | os.PathLike = "data",
    sources: tuple[Source, ...] | None = None,
    progress: bool = True,
) -> Path:
    """Make CelebA available under data_dir and return its path; sources are tried in order.

    Nothing is fetched when a CelebA copy is already in one of the loader's places. sources
    defaults to $FACEGAN_CELEBA_URLS if set, else CELEBA_SOURCES. Raises DataError naming
    each source's failure and the file to fetch by hand, and where to put it.
    """
    data_dir = Path(data_dir)
    sources = configured_sources() if sources is None else tuple(sources)
    if not sources:
        raise ConfigError("no CelebA sources were given; pass at least one Source.")
    present = _present(data_dir, sources)
    if present is not None:
        return present
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create the data folder {data_dir} ({error}).") from error
    failures: list[tuple[Source, _SourceFailed]] = []
    for source in sources:
        try:
            return _fetch(source, data_dir, progress)
        except _SourceFailed as failure:
            failures.append((source, failure))
            warnings.warn(f"{source.name}: {failure.reason}", SourceFailedWarning, stacklevel=2)
    raise DataError(_failure_message(failures, data_dir))


def configured_sources() -> tuple[Source, ...]:
    """CELEBA_SOURCES, or the URLs in $FACEGAN_CELEBA_URLS (space separated) in their order.

    Each URL must end in a file name of a known source (processed-celeba-small.zip or
    img_align_celeba.zip); it takes that source's place, checks and checksums.
    """
    text = os.environ.get(URLS_ENV, "").strip()
    if not text:
        return CELEBA_SOURCES
    by_name = {source.filename: source for source in CELEBA_SOURCES}
    chosen = []
    for url in text.split():
        parts = urllib.parse.urlsplit(url)
        name = PurePosixPath(urllib.parse.unquote(parts.path)).name
        if parts.scheme not in ("http", "https") or name not in by_name:
            raise ConfigError(
                f"{URLS_ENV} holds {url!r}: each entry must be an http(s) URL ending in one of "
                f"{', '.join(by_name)}."
            )
        chosen.append(replace(by_name[name], name=f"{name} from {parts.netloc}", url=url))
    return tuple(chosen)


def check_archive(path: str | os.PathLike, source: Source, progress: bool = True) -> int:
    """Check a downloaded CelebA zip and return its image count; raises DataError if unusable.

    A known size must match its checksum. Any other size is checked by structure (every
    member's CRC) and warned about. Member names that could escape the folder on unpacking
    (.., absolute paths, symlinks) and too few images are refused.
    """
    path = Path(path)
    _refuse_html(path)
    copies = [copy for copy in source.known_copies if copy.size == path.stat().st_size]
    if copies:
        check_checksum(path, copies, progress)
    else:
        warnings.warn(
            f"{path.name} ({path.stat().st_size:,} bytes) matches no known copy of the "
            f"{source.name}; checking its structure instead of its checksum.",
            UnverifiedCopyWarning,
            stacklevel=2,
        )
    return check_zip(path, source.name, source.min_images, check_crcs=not copies, progress=progress)


def _present(data_dir: Path, sources: tuple[Source, ...]) -> Path | None:
    """The CelebA copy the loader would use, if there is one; a broken zip is an error."""
    by_name = {source.filename: source for source in (*CELEBA_SOURCES, *sources)}
    for place in CELEBA_PLACES:
        path = data_dir / place.relative_to("data")
        if path.is_dir():
            return path
        if path.is_file():
            try:
                _refuse_html(path)
                source = by_name[path.name]
                check_zip(path, source.name, source.min_images, check_crcs=False, progress=False)
            except DataError as error:
                raise DataError(
                    f"{path} is already there but is not usable: {error} It was left as it is; "
                    "move it away or delete it, then run the download again."
                ) from error
            return path
    return None


def _fetch(source: Source, data_dir: Path, progress: bool) -> Path:
    """Download, check and move one source's file into place."""
    target = data_dir / source.filename
    part = target.with_name(target.name + ".part")
    # One cookie jar per source: Drive's confirmation step may set a cookie it wants back.
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _transfer(opener, source, part, progress)
            break
        except _TransferBroke as broke:
            if isinstance(broke, _Restart):
                part.unlink(missing_ok=True)
            if attempt == ATTEMPTS:
                kept = f"; {part} was kept and the next run resumes it" if part.exists() else ""
                raise _TransferBroke(f"{broke.reason} ({ATTEMPTS} tries){kept}") from broke
            time.sleep(RETRY_WAIT_S)
    try:
        check_archive(part, source, progress)
    except DataError as error:
        part.unlink(missing_ok=True)  # the content is wrong, so resuming it cannot help
        raise _SourceFailed(f"the download was refused: {error}") from error
    os.replace(part, target)
    return target


def _transfer(
    opener: urllib.request.OpenerDirector, source: Source, part: Path, progress: bool
) -> None:
    """Bring part up to the whole file: resume from its end if the server allows it."""
    offset = part.stat().st_size if part.exists() else 0
    response = _open_file(opener, source.url, offset)
    if response is None:
        return
    with response:
        start, total = _served_range(response, offset)
        if total is not None:
            _check_space(part.parent, total - start)
        mode = "ab" if start else "wb"  # a server that ignored Range sends it all again
        with (
            open(part, mode) as file,
            tqdm(
                total=total,
                initial=start,
                desc=source.filename,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                disable=not progress,
            ) as bar,
        ):
            try:
                while chunk := response.read(READ_CHUNK):
                    file.write(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as error:
                raise _TransferBroke(f"the transfer broke off ({_describe(error)})") from error
            file.flush()
            os.fsync(file.fileno())
    size = part.stat().st_size
    if total is not None and size != total:
        raise _TransferBroke(f"the transfer stopped at {size:,} of {total:,} bytes")


def _open_file(
    opener: urllib.request.OpenerDirector, url: str, offset: int
) -> http.client.HTTPResponse | None:
    """A response carrying the file, past any Drive confirmation page; refuses other pages.

    None means the server says the .part file already holds the whole file.
    """
    for _ in range(3):
        headers = {"User-Agent": USER_AGENT}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            response = opener.open(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
        except urllib.error.HTTPError as error:
            if error.code == 416 and error.headers.get("Content-Range") == f"bytes */{offset}":
                return None
            raise _http_failure(error, url, offset) from error
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            raise _SourceFailed(f"cannot connect ({_describe(error)})", unreachable=True) from error
        if response.headers.get_content_type() != "text/html":
            return response
        with response:
            page = _read_page(response)
        url = _page_next_url(page, response.url)
    raise _SourceFailed("the server kept sending web pages instead of the zip")


def _read_page(response: http.client.HTTPResponse) -> str:
    try:
        return response.read(_PAGE_LIMIT).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as error:
        raise _SourceFailed(f"the server's page broke off ({_describe(error)})") from error


def _http_failure(error: urllib.error.HTTPError, url: str, offset: int) -> _SourceFailed:
    """What an HTTP error status means for this download."""
    try:
        body = error.read(_PAGE_LIMIT).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        body = ""
    finally:
        error.close()
    if _is_quota_page(body):
        return _SourceFailed(_QUOTA_MESSAGE)
    if error.code == 416 and offset:
        return _Restart("the server refused to resume the partial download")
    if error.code >= 500:
        return _TransferBroke(f"server error HTTP {error.code} {error.reason}")
    hint = ""
    if error.code in (403, 429) and "google" in urllib.parse.urlsplit(url).netloc:
        hint = (
            " (Google Drive answers this when a file has been downloaded too often "
            "or too fast; it usually clears within a day)"
        )
    return _SourceFailed(f"the server answered HTTP {error.code} {error.reason}{hint}")


_QUOTA_MESSAGE = (
    "Google Drive sent its 'Quota exceeded' page instead of the zip: too many people "
    "downloaded this file recently, so Drive refuses it for now (usually for up to a day)"
)


def _is_quota_page(page: str) -> bool:
    text = html.unescape(page).lower().replace("\u2019", "'")
    return any(phrase in text for phrase in _QUOTA_PHRASES)


class _PageReader(HTMLParser):
    """Finds Drive's download confirmation (a form or a link) and the page title."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.link: str | None = None
        self.title = ""
        self._in_form = self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "form" and found.get("id") == "download-form":
            self.action, self._in_form = found.get("action", ""), True
        elif tag == "input" and self._in_form and found.get("name"):
            self.fields[found["name"]] = found.get("value", "")
        elif tag == "a" and found.get("id") == "uc-download-link":
            self.link = found.get("href")
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_form = self._in_form and tag != "form"
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def _page_next_url(page: str, base: str) -> str:
    """The URL a Drive confirmation page points at; other pages are refused with the reason."""
    if _is_quota_page(page):
        raise _SourceFailed(_QUOTA_MESSAGE)
    reader = _PageReader()
    reader.feed(page)
    if reader.action:
        action = urllib.parse.urljoin(base, reader.action)
        joiner = "&" if urllib.parse.urlsplit(action).query else "?"
        return action + joiner + urllib.parse.urlencode(reader.fields)
    if reader.link:
        return urllib.parse.urljoin(base, reader.link)
    title = " ".join(reader.title.split()) or "untitled"
    raise _SourceFailed(f"the server sent a web page ({title!r}) instead of the zip")


def _served_range(response: http.client.HTTPResponse, offset: int) -> tuple[int, int | None]:
    """(first byte served, whole file size or None) from the response headers."""
    length = response.headers.get("Content-Length")
    if response.status != 206:
        return 0, int(length) if length and length.isdigit() else None
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
    if not match or int(match[1]) != offset:
        raise _Restart("the server sent a different part of the file than asked for")
    return offset, None if match[2] == "*" else int(match[2])


def _check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise _SourceFailed(
            f"it needs {needed / 1e6:,.0f} MB of free space in {folder}, which has "
            f"{free / 1e6:,.0f} MB"
        )


def _refuse_html(path: Path) -> None:
    """An HTML page saved under a zip's name (Drive's quota page, a login page) is refused."""
    with open(path, "rb") as file:
        head = file.read(_PAGE_LIMIT)
    if not _HTML_START.match(head[:512]):
        return
    if _is_quota_page(head.decode("utf-8", "replace")):
        raise DataError(f"{path.name} is not a zip but a web page: {_QUOTA_MESSAGE}.")
    raise DataError(f"{path.name} is not a zip but a web page (HTML), e.g. an error page.")


def _describe(error: BaseException) -> str:
    reason = getattr(error, "reason", None)
    return str(reason) if reason is not None else f"{type(error).__name__}: {error}"


def _failure_message(failures: list[tuple[Source, _SourceFailed]], data_dir: Path) -> str:
    """One line: what went wrong with each source, and how to fetch the file by hand."""
    manual = " or ".join(
        f"{source.manual_url or source.url} saved as {data_dir / source.filename}"
        for source, _ in failures
    )
    hand = f"Fetch it by hand: {manual}; then load_faces('celeba') and --data celeba find it."
    if failures and all(failure.unreachable for _, failure in failures):
        return f"could not reach any CelebA source (no network?). {hand}"
    # A reason may be a sentence of its own; its full stop would double the one added here.
    reasons = "; ".join(
        f"{source.name}: {failure.reason.rstrip('.')}" for source, failure in failures
    )
    return f"CelebA could not be downloaded. {reasons}. {hand}"
