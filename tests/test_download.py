"""Tests for facegan.download, against a loopback HTTP server serving tiny archives."""

from __future__ import annotations

import hashlib
import io
import re
import socket
import stat
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from PIL import Image

from facegan import download
from facegan.__main__ import main
from facegan.archive import KnownCopy
from facegan.data import load_faces
from facegan.download import (
    ATTEMPTS,
    COURSE_ZIP,
    OFFICIAL_ZIP,
    URLS_ENV,
    SourceFailedWarning,
    UnverifiedCopyWarning,
    check_archive,
    configured_sources,
    download_celeba,
)
from facegan.errors import ConfigError, DataError

pytestmark = [
    pytest.mark.filterwarnings("ignore::facegan.download.UnverifiedCopyWarning"),
    pytest.mark.filterwarnings("ignore::facegan.download.SourceFailedWarning"),
]

COLOURS = [(220, 30, 30), (30, 200, 40), (20, 40, 210), (240, 240, 240), (10, 10, 10)]
QUOTA_PAGE = (
    b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>"
    b"<p>Too many users have viewed or downloaded this file recently.</p></body></html>"
)


def jpeg(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
        for name in links:  # a member marked as a Unix symbolic link
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


COURSE_FACES = {
    f"processed_celeba_small/celeba/{i + 1:06d}.jpg": jpeg(c) for i, c in enumerate(COLOURS)
}
GOOD_ZIP = zip_bytes(COURSE_FACES)
ALIGNED_ZIP = zip_bytes({f"img_align_celeba/{i:06d}.jpg": jpeg(c) for i, c in enumerate(COLOURS)})


@dataclass
class Loopback:
    """A server on 127.0.0.1: routes by path, and a record of every request's path and headers."""

    base: str
    routes: dict[str, Callable[[BaseHTTPRequestHandler], None]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        loopback: Loopback = self.server.loopback
        loopback.requests.append((self.path, dict(self.headers)))
        route = loopback.routes.get(urlsplit(self.path).path)
        if route is None:
            self.send_error(404)
        else:
            route(self)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Loopback]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.loopback = Loopback(f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield httpd.loopback
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def no_retry_wait(monkeypatch) -> None:
    monkeypatch.setattr(download, "RETRY_WAIT_S", 0.0)
    monkeypatch.delenv(URLS_ENV, raising=False)


def serve(body: bytes, ranges: bool = True, drop_after: int | None = None, drops: int = 0):
    """Serve body, honouring Range if ranges; the first `drops` responses break off after
    drop_after bytes while promising the whole rest (a dropped connection)."""
    calls = []

    def respond(handler: BaseHTTPRequestHandler) -> None:
        calls.append(handler.path)
        start = 0
        asked = re.fullmatch(r"bytes=(\d+)-", handler.headers.get("Range", ""))
        if ranges and asked:
            start = int(asked[1])
            if start >= len(body):
                handler.send_response(416)
                handler.send_header("Content-Range", f"bytes */{len(body)}")
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            handler.send_response(200)
        handler.send_header("Content-Type", "application/zip")
        handler.send_header("Content-Length", str(len(body) - start))
        handler.end_headers()
        stop = start + drop_after if len(calls) <= drops else len(body)
        handler.wfile.write(body[start:stop])

    return respond


def page(content: bytes, status: int = 200, headers: dict[str, str] | None = None):
    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        handler.send_header("Content-Length", str(len(content)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(content)

    return respond


def course(url: str, **changes):
    """The course source aimed at url, expecting only a few images."""
    return replace(COURSE_ZIP, **{"url": url, "min_images": 3, **changes})


def aligned(url: str, **changes):
    """The official source aimed at url, expecting only a few images."""
    return replace(OFFICIAL_ZIP, **{"url": url, "min_images": 3, **changes})


def leftovers(data_dir: Path) -> list[str]:
    return sorted(path.name for path in data_dir.iterdir()) if data_dir.exists() else []


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# A good download


def test_course_zip_lands_where_the_loader_finds_it(server, tmp_path, monkeypatch):
    server.routes["/processed-celeba-small.zip"] = serve(GOOD_ZIP)
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UnverifiedCopyWarning, match="matches no known copy"):
        path = download_celeba(sources=(course(server.url("/processed-celeba-small.zip")),))
    assert path == Path("data/processed-celeba-small.zip")
    assert path.read_bytes() == GOOD_ZIP
    assert leftovers(tmp_path / "data") == ["processed-celeba-small.zip"]

    faces = load_faces("celeba", 16, progress=False)
    assert faces.source == str((tmp_path / path).resolve())
    assert len(faces) == len(COLOURS)
    means = faces.images.reshape(len(COLOURS), -1, 3).mean(axis=1)
    assert np.abs(means - np.array(COLOURS)).max() < 8


def test_a_known_copy_is_checked_by_checksum_without_warning(server, tmp_path):
    digest = hashlib.sha256(GOOD_ZIP).hexdigest()
    known = (KnownCopy(len(GOOD_ZIP), "sha256", digest),)
    server.routes["/processed-celeba-small.zip"] = serve(GOOD_ZIP)
    source = course(server.url("/processed-celeba-small.zip"), known_copies=known)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnverifiedCopyWarning)
        path = download_celeba(tmp_path / "data", (source,), progress=False)
    assert path.read_bytes() == GOOD_ZIP


def test_checksum_mismatch_at_a_known_size_is_refused(server, tmp_path):
    known = (KnownCopy(len(GOOD_ZIP), "sha256", "0" * 64),)
    server.routes["/processed-celeba-small.zip"] = serve(GOOD_ZIP)
    source = course(server.url("/processed-celeba-small.zip"), known_copies=known)
    with pytest.raises(DataError, match="checksum.*damaged"):
        download_celeba(tmp_path / "data", (source,), progress=False)
    assert leftovers(tmp_path / "data") == []


# Damaged and unexpected content


def test_a_truncated_archive_is_refused_and_nothing_is_left(server, tmp_path):
    server.routes["/processed-celeba-small.zip"] = serve(GOOD_ZIP[: len(GOOD_ZIP) * 2 // 3])
    source = course(server.url("/processed-celeba-small.zip"))
    with pytest.raises(DataError, match="not a whole, sound zip") as caught:
        download_celeba(tmp_path / "data", (source,), progress=False)
    assert "\n" not in str(caught.value)
    assert leftovers(tmp_path / "data") == []


def test_a_damaged_member_fails_the_structural_check(tmp_path):
    damaged = bytearray(GOOD_ZIP)
    first = GOOD_ZIP.index(COURSE_FACES["processed_celeba_small/celeba/000001.jpg"])
    damaged[first + 100] ^= 0xFF  # inside the first image's stored bytes
    (tmp_path / "processed-celeba-small.zip").write_bytes(damaged)
    with pytest.raises(DataError, match="CRC"):
        check_archive(tmp_path / "processed-celeba-small.zip", course("unused"), progress=False)


def test_too_few_images_are_refused(tmp_path):
    (tmp_path / "processed-celeba-small.zip").write_bytes(GOOD_ZIP)
    source = course("unused", min_images=len(COLOURS) + 1)
    with pytest.raises(DataError, match=f"holds {len(COLOURS)} images.*at least"):
        check_archive(tmp_path / "processed-celeba-small.zip", source, progress=False)


def test_a_download_with_too_few_images_reads_as_one_sentence_per_reason(server, tmp_path):
    server.routes["/processed-celeba-small.zip"] = serve(GOOD_ZIP)
    source = course(server.url("/processed-celeba-small.zip"), min_images=len(COLOURS) + 1)
    with pytest.raises(DataError, match="at least") as caught:
        download_celeba(tmp_path / "data", (source,), progress=False)
    assert ".." not in str(caught.value)


def test_a_quota_page_is_refused_and_the_next_source_is_tried(server, tmp_path):
    server.routes["/processed-celeba-small.zip"] = page(QUOTA_PAGE)
    server.routes["/img_align_celeba.zip"] = serve(ALIGNED_ZIP)
    sources = (
        course(server.url("/processed-celeba-small.zip")),
        aligned(server.url("/img_align_celeba.zip")),
    )
    with pytest.warns(SourceFailedWarning, match="Quota exceeded"):
        path = download_celeba(tmp_path / "data", sources, progress=False)
    assert path == tmp_path / "data" / "img_align_celeba.zip"
    assert path.read_bytes() == ALIGNED_ZIP
    assert leftovers(tmp_path / "data") == ["img_align_celeba.zip"]


def test_a_quota_page_saved_under_a_zip_type_is_refused_with_the_quota_message(server, tmp_path):
    server.routes["/img_align_celeba.zip"] = serve(QUOTA_PAGE)  # served as application/zip
    with pytest.raises(DataError, match="not a zip but a web page.*Quota exceeded"):
        download_celeba(tmp_path / "data", (aligned(server.url("/img_align_celeba.zip")),))
    assert leftovers(tmp_path / "data") == []


def test_a_403_quota_answer_says_so(server, tmp_path):
    server.routes["/img_align_celeba.zip"] = page(QUOTA_PAGE, status=403)
    with pytest.raises(DataError, match="Quota exceeded"):
        download_celeba(tmp_path / "data", (aligned(server.url("/img_align_celeba.zip")),))


def test_another_web_page_is_refused_naming_its_title(server, tmp_path):
    login = b"<html><head><title>Sign in</title></head><body>please sign in</body></html>"
    server.routes["/img_align_celeba.zip"] = page(login)
    with pytest.raises(DataError, match="web page \\('Sign in'\\) instead of the zip"):
        download_celeba(tmp_path / "data", (aligned(server.url("/img_align_celeba.zip")),))


def test_drive_confirmation_form_is_followed_with_its_fields_and_cookie(server, tmp_path):
    form = (
        b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>"
        b'<body><form id="download-form" action="/usercontent" method="get">'
        b'<input type="hidden" name="id" value="abc"><input type="hidden" name="confirm" '
        b'value="t"><input type="hidden" name="uuid" value="u-123"></form></body></html>'
    )
    server.routes["/uc"] = page(form, headers={"Set-Cookie": "download_warning=tok; Path=/"})
    server.routes["/usercontent"] = serve(ALIGNED_ZIP)
    path = download_celeba(tmp_path / "data", (aligned(server.url("/uc?id=abc")),), progress=False)
    assert path.read_bytes() == ALIGNED_ZIP
    (_, _), (second, headers) = server.requests
    assert parse_qs(urlsplit(second).query) == {"id": ["abc"], "confirm": ["t"], "uuid": ["u-123"]}
    assert headers.get("Cookie") == "download_warning=tok"


# Unsafe archives


@pytest.mark.parametrize(
    ("members", "links", "problem"),
    [
        ({"../evil.jpg": jpeg(COLOURS[0])}, (), "'..'"),
        ({"/tmp/evil.jpg": jpeg(COLOURS[0])}, (), "absolute path"),
        ({"C:/evil.jpg": jpeg(COLOURS[0])}, (), "absolute path"),
        ({"a\\..\\..\\evil.jpg": jpeg(COLOURS[0])}, (), "'..'"),
        ({}, ("processed_celeba_small/celeba/link.jpg",), "symbolic link"),
    ],
)
def test_members_that_could_leave_the_folder_are_refused(tmp_path, members, links, problem):
    archive = tmp_path / "processed-celeba-small.zip"
    archive.write_bytes(zip_bytes({**COURSE_FACES, **members}, links))
    with pytest.raises(DataError, match=f"is an? {re.escape(problem)}.*outside the target folder"):
        check_archive(archive, course("unused"), progress=False)


def test_a_path_traversal_download_is_refused_and_writes_nothing_outside(server, tmp_path):
    hostile = zip_bytes({**COURSE_FACES, "../../evil.jpg": jpeg(COLOURS[0])})
    server.routes["/processed-celeba-small.zip"] = serve(hostile)
    data_dir = tmp_path / "deep" / "data"
    with pytest.raises(DataError, match="outside the target folder"):
        download_celeba(data_dir, (course(server.url("/processed-celeba-small.zip")),))
    assert list(tmp_path.rglob("evil.jpg")) == []
    assert leftovers(data_dir) == []


# Breaks and resumes


def test_a_dropped_connection_resumes_with_a_range_request(server, tmp_path):
    cut = len(GOOD_ZIP) // 3
    server.routes["/processed-celeba-small.zip"] = serve(GOOD_ZIP, drop_after=cut, drops=1)
    source = course(server.url("/processed-celeba-small.zip"))
    path = download_celeba(tmp_path / "data", (source,), progress=False)
    assert path.read_bytes() == GOOD_ZIP
    (_, first), (_, second) = server.requests
    assert "Range" not in first
    assert second["Range"] == f"bytes={cut}-"


def test_a_transfer_that_keeps_breaking_keeps_its_part_for_the_next_run(server, tmp_path):
    cut = len(GOOD_ZIP) // 10
    route = "/processed-celeba-small.zip"
    server.routes[route] = serve(GOOD_ZIP, drop_after=cut, drops=ATTEMPTS)
    source = course(server.url(route))
    data_dir = tmp_path / "data"
    with pytest.raises(DataError, match="was kept and the next run resumes it"):
        download_celeba(data_dir, (source,), progress=False)
    part = data_dir / "processed-celeba-small.zip.part"
    assert leftovers(data_dir) == [part.name]
    assert part.read_bytes() == GOOD_ZIP[: ATTEMPTS * cut]

    server.routes[route] = serve(GOOD_ZIP)
    server.requests.clear()
    path = download_celeba(data_dir, (source,), progress=False)
    assert path.read_bytes() == GOOD_ZIP
    assert server.requests[0][1]["Range"] == f"bytes={ATTEMPTS * cut}-"
    assert leftovers(data_dir) == ["processed-celeba-small.zip"]


def test_a_server_that_ignores_range_restarts_cleanly(server, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "processed-celeba-small.zip.part").write_bytes(b"stale bytes from elsewhere")
    server.routes["/processed-celeba-small.zip"] = serve(GOOD_ZIP, ranges=False)
    path = download_celeba(data_dir, (course(server.url("/processed-celeba-small.zip")),))
    assert path.read_bytes() == GOOD_ZIP
    assert server.requests[0][1]["Range"] == "bytes=26-"


def test_a_part_that_already_holds_the_whole_file_is_not_fetched_again(server, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "processed-celeba-small.zip.part").write_bytes(GOOD_ZIP)
    server.routes["/processed-celeba-small.zip"] = serve(GOOD_ZIP)
    path = download_celeba(data_dir, (course(server.url("/processed-celeba-small.zip")),))
    assert path.read_bytes() == GOOD_ZIP
    assert len(server.requests) == 1  # answered 416 with the same size: nothing to add


def test_a_part_longer_than_the_file_is_dropped_and_fetched_afresh(server, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "processed-celeba-small.zip.part").write_bytes(GOOD_ZIP + b"extra")
    server.routes["/processed-celeba-small.zip"] = serve(GOOD_ZIP)
    path = download_celeba(data_dir, (course(server.url("/processed-celeba-small.zip")),))
    assert path.read_bytes() == GOOD_ZIP
    assert [headers.get("Range") for _, headers in server.requests] == [
        f"bytes={len(GOOD_ZIP) + 5}-",
        None,
    ]


# What is already there


def test_a_copy_already_in_place_is_used_and_nothing_is_fetched(server, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "processed-celeba-small.zip").write_bytes(GOOD_ZIP)
    source = course(server.url("/processed-celeba-small.zip"))
    assert download_celeba(data_dir, (source,)) == data_dir / "processed-celeba-small.zip"
    (data_dir / "img_align_celeba").mkdir()
    (data_dir / "processed-celeba-small.zip").unlink()
    assert download_celeba(data_dir, (source,)) == data_dir / "img_align_celeba"
    assert server.requests == []


def test_a_broken_file_in_place_is_reported_and_left_untouched(server, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "img_align_celeba.zip").write_bytes(QUOTA_PAGE)
    source = aligned(server.url("/img_align_celeba.zip"))
    with pytest.raises(DataError, match="already there but is not usable.*Quota exceeded"):
        download_celeba(data_dir, (source,))
    assert (data_dir / "img_align_celeba.zip").read_bytes() == QUOTA_PAGE
    assert server.requests == []


# Offline, settings and the command line


def test_offline_names_each_file_its_url_and_where_to_put_it(tmp_path, monkeypatch):
    port = closed_port()
    sources = (
        course(f"http://127.0.0.1:{port}/processed-celeba-small.zip"),
        aligned(f"http://127.0.0.1:{port}/uc?id=x", manual_url="https://example.org/by-hand"),
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as caught:
        download_celeba(sources=sources, progress=False)
    message = str(caught.value)
    assert message.startswith("could not reach any CelebA source (no network?)")
    assert f"http://127.0.0.1:{port}/processed-celeba-small.zip saved as " in message
    assert str(Path("data/processed-celeba-small.zip")) in message
    assert f"https://example.org/by-hand saved as {Path('data/img_align_celeba.zip')}" in message
    assert "\n" not in message


def test_the_built_in_sources_name_the_course_zip_and_the_drive_file():
    assert COURSE_ZIP.url.endswith("/processed-celeba-small.zip")
    assert COURSE_ZIP.known_copies[0].size == 247_694_507
    assert "0B7EVK8r0v71pZjFTYXZWM3FlRnM" in OFFICIAL_ZIP.url
    assert configured_sources() == (COURSE_ZIP, OFFICIAL_ZIP)


def test_the_environment_chooses_sources_by_file_name(monkeypatch):
    monkeypatch.setenv(
        URLS_ENV, "http://m.test/a/img_align_celeba.zip https://n.test/processed-celeba-small.zip"
    )
    chosen = configured_sources()
    assert [source.filename for source in chosen] == [
        "img_align_celeba.zip",
        "processed-celeba-small.zip",
    ]
    assert chosen[0].url == "http://m.test/a/img_align_celeba.zip"
    assert chosen[0].known_copies == OFFICIAL_ZIP.known_copies
    for bad in ("http://m.test/other.zip", "ftp://m.test/img_align_celeba.zip"):
        monkeypatch.setenv(URLS_ENV, bad)
        with pytest.raises(ConfigError, match=URLS_ENV):
            configured_sources()


def test_cli_failure_is_exit_2_with_one_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(URLS_ENV, f"http://127.0.0.1:{closed_port()}/processed-celeba-small.zip")
    assert main(["data", "download", "celeba", "--no-progress"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == err.splitlines()[-1]
    assert "could not reach any CelebA source" in errors[0]
    assert "Traceback" not in err


def test_cli_downloads_into_data(server, tmp_path, monkeypatch, capsys):
    server.routes["/processed-celeba-small.zip"] = serve(GOOD_ZIP)
    monkeypatch.setattr(
        download, "CELEBA_SOURCES", (course(server.url("/processed-celeba-small.zip")),)
    )
    monkeypatch.chdir(tmp_path)
    assert main(["data", "download", "celeba", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "data/processed-celeba-small.zip" in out and "--data celeba" in out
    assert (tmp_path / "data" / "processed-celeba-small.zip").read_bytes() == GOOD_ZIP
