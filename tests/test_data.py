"""Tests for facegan.data: sources, preprocessing, the cache and the data order."""

import io
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facegan import data, synthfaces
from facegan.data import (
    CELEBA_PLACES,
    FaceDataset,
    UnreadableImagesWarning,
    decode_image,
    epoch_order,
    load_faces,
    scale,
)
from facegan.errors import ConfigError, DataError
from tests.support.faults import bomb_png, make_zip, png

RED, GREEN, BLUE = (220, 30, 30), (30, 200, 40), (20, 40, 210)


def image_bytes(colour=RED, size=(8, 8), fmt="PNG", mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, fmt)
    return buffer.getvalue()


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def course_members(colours) -> dict[str, bytes]:
    """The course zip layout: processed_celeba_small/celeba/*.jpg at 64x64."""
    return {
        f"processed_celeba_small/celeba/{i + 1:06d}.jpg": image_bytes(c, (64, 64), "JPEG")
        for i, c in enumerate(colours)
    }


def assert_colours(images: np.ndarray, colours, tolerance: int = 6) -> None:
    assert len(images) == len(colours)
    for image, colour in zip(images, colours, strict=True):
        assert np.abs(image.astype(int) - colour).max() <= tolerance


def load(source, image_size=16, **kwargs) -> FaceDataset:
    return load_faces(source, image_size, progress=False, **kwargs)


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# Sources


def test_synthetic_matches_the_renderer(tmp_path):
    faces = load("synthetic", n_images=6, seed=3, cache_dir=tmp_path)
    images, attributes = synthfaces.render_faces(6, 16, seed=3)
    np.testing.assert_array_equal(faces.images, images)
    assert faces.attributes.keys() == attributes.keys()
    for name, values in attributes.items():
        np.testing.assert_array_equal(faces.attributes[name], values)
    assert (len(faces), faces.image_size, faces.skipped) == (6, 16, [])
    assert "synthetic" in faces.source


def test_synthetic_renders_in_chunks_that_join_seamlessly(tmp_path, monkeypatch):
    monkeypatch.setattr(synthfaces, "RENDER_CHUNK", 4)
    faces = load("synthetic", n_images=10, cache_dir=tmp_path)
    images, attributes = synthfaces.render_faces(10, 16)
    np.testing.assert_array_equal(faces.images, images)
    for name, values in attributes.items():
        np.testing.assert_array_equal(faces.attributes[name], values)


def test_synthetic_seed_changes_the_faces(tmp_path):
    first = load("synthetic", n_images=4, seed=0, cache_dir=tmp_path)
    second = load("synthetic", n_images=4, seed=1, cache_dir=tmp_path)
    assert not np.array_equal(first.images, second.images)


def test_synthetic_default_count(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEFAULT_SYNTHETIC_IMAGES", 3)
    assert len(load("synthetic", cache_dir=tmp_path)) == 3


def test_folder_is_searched_recursively_in_relative_path_order(tmp_path):
    folder = tmp_path / "faces"
    write(folder / "b" / "1.png", image_bytes(GREEN))
    write(folder / "a" / "2.PNG", image_bytes(RED))
    write(folder / "c.JPG", image_bytes(BLUE, fmt="JPEG"))
    write(folder / "d.webp", image_bytes(GREEN, fmt="WEBP", size=(16, 16)))
    write(folder / "e.bmp", image_bytes(RED, fmt="BMP"))
    write(folder / "notes.txt", b"not an image")
    write(folder / "f.gif", image_bytes(RED, fmt="GIF"))
    faces = load(folder, cache_dir=tmp_path / "cache")
    assert_colours(faces.images, [RED, GREEN, BLUE, GREEN, RED])
    assert faces.source == str(folder.resolve())
    assert faces.attributes is None


def test_course_zip_is_read_without_extracting(tmp_path):
    source = tmp_path / "src"
    zip_path = make_zip(source / "processed-celeba-small.zip", course_members([BLUE, RED, GREEN]))
    with zipfile.ZipFile(zip_path, "a") as archive:
        archive.writestr("processed_celeba_small/celeba/empty_dir/", b"")
        archive.writestr("__MACOSX/processed_celeba_small/celeba/._000001.jpg", b"junk")
    faces = load(zip_path, cache_dir=tmp_path / "cache")
    assert_colours(faces.images, [BLUE, RED, GREEN])
    assert faces.skipped == []
    assert files_under(source) == {"processed-celeba-small.zip"}


def test_zip_member_names_are_only_read_never_written(tmp_path):
    zip_path = make_zip(tmp_path / "src" / "odd.zip", {"../escape.png": image_bytes()})
    faces = load(zip_path, cache_dir=tmp_path / "cache")
    assert_colours(faces.images, [RED])
    assert not (tmp_path / "escape.png").exists()


def official_face(width: int, height: int) -> bytes:
    """A portrait whose centre square is RED and whose top and bottom margins are BLUE."""
    image = Image.new("RGB", (width, height), BLUE)
    margin = (height - width) // 2
    image.paste(RED, (0, margin, width, margin + width))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("image_size", [16, 32, 64])
def test_official_and_half_size_images_get_the_same_centre_crop(tmp_path, image_size):
    full = make_zip(tmp_path / "full.zip", {"img_align_celeba/000001.png": official_face(178, 218)})
    half = make_zip(tmp_path / "half.zip", {"img_align_celeba/000001.png": official_face(89, 109)})
    full_faces = load(full, image_size, cache_dir=tmp_path / "cache")
    half_faces = load(half, image_size, cache_dir=tmp_path / "cache")
    assert full_faces.images.shape == (1, image_size, image_size, 3)
    assert_colours(full_faces.images, [RED], tolerance=2)
    assert_colours(half_faces.images, [RED], tolerance=2)


def test_centre_crop_of_a_landscape_image():
    image = Image.new("RGB", (60, 20), BLUE)
    image.paste(GREEN, (20, 0, 40, 20))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    assert_colours(decode_image(buffer.getvalue(), 16)[None], [GREEN], tolerance=2)


def test_small_images_are_upsampled():
    assert decode_image(image_bytes(RED, (5, 7)), 64).shape == (64, 64, 3)


def place_contents(place: Path) -> None:
    if place.suffix == ".zip":
        inner = "processed_celeba_small/celeba" if "processed" in place.name else place.stem
        make_zip(place, {f"{inner}/000001.png": image_bytes(GREEN)})
    else:
        write(place / "000001.png", image_bytes(GREEN))


@pytest.mark.parametrize("index", range(len(CELEBA_PLACES)))
def test_celeba_is_found_in_each_standard_place(tmp_path, monkeypatch, index):
    monkeypatch.chdir(tmp_path)
    place_contents(CELEBA_PLACES[index])
    faces = load("celeba", cache_dir=tmp_path / "cache")
    assert faces.source == str((tmp_path / CELEBA_PLACES[index]).resolve())
    assert_colours(faces.images, [GREEN])


def test_celeba_places_are_tried_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for place in reversed(CELEBA_PLACES):
        place_contents(place)
    faces = load("celeba", cache_dir=tmp_path / "cache")
    assert faces.source == str((tmp_path / CELEBA_PLACES[0]).resolve())


def test_missing_celeba_says_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as caught:
        load("celeba", cache_dir=tmp_path / "cache")
    message = str(caught.value)
    for place in CELEBA_PLACES:
        assert str(tmp_path / place) in message
    assert "processed-celeba-small.zip" in message
    assert "img_align_celeba/" in message


# Items and batch helpers


def test_items_are_bare_float_tensors_in_range(tmp_path):
    folder = tmp_path / "faces"
    write(folder / "a.png", image_bytes((0, 128, 255)))
    write(folder / "b.png", image_bytes(GREEN))
    faces = load(folder, 32, cache_dir=tmp_path / "cache")
    item = faces[0]
    assert isinstance(item, torch.Tensor)
    assert item.dtype == torch.float32
    assert item.shape == (3, 32, 32)
    assert item.is_contiguous()
    torch.testing.assert_close(item[:, 5, 5], torch.tensor([-1.0, 128 / 127.5 - 1, 1.0]))
    assert faces[-1].shape == (3, 32, 32)
    with pytest.raises(IndexError):
        faces[2]
    assert faces.images.dtype == np.uint8
    assert isinstance(faces.images, np.memmap)


def test_scale():
    x = torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(scale(x), torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(scale(x, (0, 255)), torch.tensor([0.0, 127.5, 255.0]))


def test_epoch_order_is_a_pure_function_of_seed_and_epoch():
    first = epoch_order(100, seed=7, epoch=3)
    torch.manual_seed(12345)  # the global RNG must not matter
    assert torch.equal(first, epoch_order(100, seed=7, epoch=3))
    assert first.dtype == torch.int64
    assert first.device.type == "cpu"
    assert sorted(first.tolist()) == list(range(100))
    assert not torch.equal(first, epoch_order(100, seed=7, epoch=4))
    assert not torch.equal(first, epoch_order(100, seed=8, epoch=3))


# The cache


@pytest.fixture
def three_faces(tmp_path) -> Path:
    folder = tmp_path / "faces"
    for name, colour in [("a.png", RED), ("b.png", GREEN), ("c.png", BLUE)]:
        write(folder / name, image_bytes(colour))
    return folder


def forbid(monkeypatch, name: str, module=data) -> None:
    def fail(*args, **kwargs):
        raise AssertionError(f"{name} called on a cached load")

    monkeypatch.setattr(module, name, fail)


def count_decodes(monkeypatch) -> list[int]:
    calls = []
    real = data.decode_image

    def counted(content, image_size):
        calls.append(image_size)
        return real(content, image_size)

    monkeypatch.setattr(data, "decode_image", counted)
    return calls


def test_second_load_does_not_decode(tmp_path, three_faces, monkeypatch):
    cache = tmp_path / "cache"
    first = load(three_faces, cache_dir=cache)
    forbid(monkeypatch, "decode_image")
    second = load(three_faces, cache_dir=cache)
    np.testing.assert_array_equal(first.images, second.images)
    assert isinstance(second.images, np.memmap)
    assert second.source == first.source


def test_second_synthetic_load_does_not_render(tmp_path, monkeypatch):
    first = load("synthetic", n_images=3, cache_dir=tmp_path)
    forbid(monkeypatch, "render_faces", synthfaces)
    second = load("synthetic", n_images=3, cache_dir=tmp_path)
    np.testing.assert_array_equal(first.images, second.images)
    for name, values in first.attributes.items():
        np.testing.assert_array_equal(second.attributes[name], values)


def test_cache_comes_from_env_var(tmp_path, three_faces, monkeypatch):
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path / "env-cache"))
    load(three_faces)
    assert any(name.endswith(".npy") for name in files_under(tmp_path / "env-cache"))


def test_settings_get_their_own_caches(tmp_path, three_faces, monkeypatch):
    cache = tmp_path / "cache"
    calls = count_decodes(monkeypatch)
    assert load(three_faces, 16, cache_dir=cache).images.shape[1:] == (16, 16, 3)
    assert load(three_faces, 32, cache_dir=cache).images.shape[1:] == (32, 32, 3)
    assert len(load(three_faces, 32, n_images=2, cache_dir=cache)) == 2
    assert calls == [16] * 3 + [32] * 3 + [32] * 2
    assert len([name for name in files_under(cache) if name.endswith(".npy")]) == 3


def test_changed_folder_gets_a_new_cache(tmp_path, three_faces):
    cache = tmp_path / "cache"
    assert len(load(three_faces, cache_dir=cache)) == 3
    write(three_faces / "d.png", image_bytes(RED))
    assert len(load(three_faces, cache_dir=cache)) == 4
    write(three_faces / "a.png", image_bytes(GREEN))
    stat = (three_faces / "a.png").stat()
    os.utime(three_faces / "a.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert_colours(load(three_faces, cache_dir=cache).images, [GREEN, GREEN, BLUE, RED])


def test_changed_zip_gets_a_new_cache(tmp_path):
    cache = tmp_path / "cache"
    zip_path = make_zip(tmp_path / "faces.zip", course_members([RED]))
    assert_colours(load(zip_path, cache_dir=cache).images, [RED])
    make_zip(zip_path, course_members([BLUE, GREEN]))
    stat = zip_path.stat()
    os.utime(zip_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert_colours(load(zip_path, cache_dir=cache).images, [BLUE, GREEN])


def test_failed_decode_leaves_no_cache(tmp_path, three_faces, monkeypatch):
    cache = tmp_path / "cache"
    calls = []

    def crash_on_second(content, image_size):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("power cut")
        return np.zeros((image_size, image_size, 3), np.uint8)

    monkeypatch.setattr(data, "decode_image", crash_on_second)
    with pytest.raises(RuntimeError):
        load(three_faces, cache_dir=cache)
    assert files_under(cache) == set()
    monkeypatch.undo()
    assert_colours(load(three_faces, cache_dir=cache).images, [RED, GREEN, BLUE])


def test_cache_without_its_metadata_is_rebuilt(tmp_path, three_faces):
    cache = tmp_path / "cache"
    load(three_faces, cache_dir=cache)
    for name in files_under(cache):
        if name.endswith(".json"):
            (cache / name).unlink()
    assert_colours(load(three_faces, cache_dir=cache).images, [RED, GREEN, BLUE])


# Unreadable images


def broken_files(folder: Path) -> list[str]:
    truncated = image_bytes(RED, (64, 64), "JPEG")
    write(folder / "bad_empty.jpg", b"")
    write(folder / "bad_random.jpg", np.random.default_rng(0).bytes(500))
    write(folder / "bad_truncated.jpg", truncated[: len(truncated) // 2])
    return ["bad_empty.jpg", "bad_random.jpg", "bad_truncated.jpg"]


def test_unreadable_files_are_skipped_with_one_warning(tmp_path, three_faces):
    bad = broken_files(three_faces)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        faces = load(three_faces, cache_dir=tmp_path / "cache")
    assert [w.category for w in caught] == [UnreadableImagesWarning]
    message = str(caught[0].message)
    assert "3 unreadable" in message
    assert all(name in message for name in bad)
    assert faces.skipped == bad
    assert_colours(faces.images, [RED, GREEN, BLUE])


def test_cached_load_keeps_and_reports_the_skipped_files(tmp_path, three_faces):
    bad = broken_files(three_faces)
    with pytest.warns(UnreadableImagesWarning):
        load(three_faces, cache_dir=tmp_path / "cache")
    with pytest.warns(UnreadableImagesWarning):
        faces = load(three_faces, cache_dir=tmp_path / "cache")
    assert faces.skipped == bad


def test_warning_names_at_most_five_files(tmp_path):
    folder = tmp_path / "faces"
    write(folder / "good.png", image_bytes())
    for i in range(8):
        write(folder / f"bad{i}.jpg", b"")
    with pytest.warns(UnreadableImagesWarning) as caught:
        faces = load(folder, cache_dir=tmp_path / "cache")
    message = str(caught[0].message)
    assert "8 unreadable" in message
    assert "bad4.jpg" in message
    assert "bad5.jpg" not in message
    assert "3 more" in message
    assert len(faces.skipped) == 8


def test_n_images_counts_readable_images(tmp_path, three_faces):
    write(three_faces / "a0.jpg", b"")
    with pytest.warns(UnreadableImagesWarning):
        faces = load(three_faces, n_images=2, cache_dir=tmp_path / "cache")
    assert_colours(faces.images, [RED, GREEN])
    assert faces.skipped == ["a0.jpg"]


def test_all_unreadable_is_an_error(tmp_path):
    folder = tmp_path / "faces"
    broken_files(folder)
    with pytest.raises(DataError, match="none of the 3 images"):
        load(folder, cache_dir=tmp_path / "cache")
    assert files_under(tmp_path / "cache") == set()


@pytest.mark.parametrize("size", [(40, 40), (64, 64)])  # over the warning, over the error limit
def test_decompression_bombs_are_unreadable(monkeypatch, size):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DataError):
        decode_image(image_bytes(RED, size), 16)


@pytest.mark.parametrize(
    ("side", "kind"), [(10000, "DecompressionBombWarning"), (20000, "DecompressionBombError")]
)
def test_an_image_declaring_a_huge_size_is_refused_before_decoding(side, kind):
    # The header alone declares 10^8 or 4 * 10^8 pixels, over Pillow's limits.
    with pytest.raises(DataError, match=kind):
        decode_image(bomb_png(side), 16)


def test_a_decompression_bomb_in_a_folder_is_skipped_and_counted(tmp_path, three_faces):
    write(three_faces / "bomb.png", bomb_png(20000))
    with pytest.warns(UnreadableImagesWarning, match="skipped 1 unreadable image.*bomb.png"):
        faces = load(three_faces, cache_dir=tmp_path / "cache")
    assert faces.skipped == ["bomb.png"]
    assert_colours(faces.images, [RED, GREEN, BLUE])


@pytest.mark.parametrize("content", [b"", b"\xff\xd8\xff", b"GIF89a" + b"\0" * 20])
def test_decode_image_raises_data_error_on_garbage(content):
    with pytest.raises(DataError):
        decode_image(content, 16)


# Mode conversions


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def palette_image() -> Image.Image:
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, *RED] + [0] * 762)
    return image


def uint16_image(value: int) -> Image.Image:
    return Image.fromarray(np.full((8, 8), value, dtype=np.uint16))


@pytest.mark.parametrize(
    ("image", "fmt", "expected", "tolerance"),
    [
        (Image.new("L", (8, 8), 100), "PNG", (100, 100, 100), 0),
        (Image.new("LA", (8, 8), (100, 0)), "PNG", (100, 100, 100), 0),
        (Image.new("RGBA", (8, 8), (*RED, 0)), "PNG", RED, 0),
        (Image.new("1", (8, 8), 1), "PNG", (255, 255, 255), 0),
        (palette_image(), "PNG", RED, 0),
        (Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", (255, 0, 0), 8),
        (uint16_image(128 * 257), "PNG", (128, 128, 128), 0),
        (uint16_image(65535), "PNG", (255, 255, 255), 0),
        (uint16_image(1000), "PNG", (4, 4, 4), 0),
        (Image.new("I", (8, 8), 128 * 257), "TIFF", (128, 128, 128), 0),
    ],
    ids=["L", "LA", "RGBA", "1", "P", "CMYK", "I;16-mid", "I;16-max", "I;16-dark", "I"],
)
def test_modes_become_sensible_8_bit_rgb(image, fmt, expected, tolerance):
    decoded = decode_image(encoded(image, fmt), 16)
    assert decoded.shape == (16, 16, 3)
    assert decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - expected).max() <= tolerance


def png_16_bit(channels: np.ndarray) -> bytes:
    """A 16-bit RGB or RGBA PNG (Pillow writes neither) with these [H, W, C] values."""
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in channels)
    height, width, depth = channels.shape
    return png(width, height, 16, {3: 2, 4: 6}[depth], rows)


@pytest.mark.parametrize("alpha", [False, True], ids=["RGB;16", "RGBA;16"])
def test_16_bit_colour_becomes_8_bit_rgb(alpha):
    values = [65535, 1000, 128 * 257] + [0] * alpha
    decoded = decode_image(png_16_bit(np.full((6, 5, len(values)), values)), 16)
    assert decoded.shape == (16, 16, 3) and decoded.dtype == np.uint8
    # Pillow keeps the high byte of each 16-bit value: 1000 (3.9 in 8 bits) becomes 3.
    assert np.abs(decoded.astype(int) - (255, 4, 128)).max() <= 1


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (40, 7)])
def test_images_smaller_than_the_target_size_are_scaled_up(size):
    decoded = decode_image(image_bytes(GREEN, size), 64)
    assert decoded.shape == (64, 64, 3) and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - GREEN).max() <= 2


def test_exif_rotation_is_applied():
    image = Image.new("RGB", (40, 20), BLUE)
    image.paste(RED, (0, 0, 40, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes(), quality=95)
    decoded = decode_image(buffer.getvalue(), 16).astype(int)
    assert np.abs(decoded[:, :6] - BLUE).max() <= 10
    assert np.abs(decoded[:, -6:] - RED).max() <= 10


# Bad sources and settings


def test_missing_path_says_what_is_accepted(tmp_path):
    with pytest.raises(DataError) as caught:
        load(tmp_path / "nowhere", cache_dir=tmp_path / "cache")
    message = str(caught.value)
    assert "does not exist" in message
    assert all(word in message for word in ['"synthetic"', '"celeba"', "folder", ".zip"])


@pytest.mark.parametrize("contents", [{}, {"notes.txt": b"hello", "sub/x.gif": b"GIF89a"}])
def test_folder_without_images_is_an_error(tmp_path, contents):
    folder = tmp_path / "faces"
    folder.mkdir()
    for name, content in contents.items():
        write(folder / name, content)
    with pytest.raises(DataError) as caught:
        load(folder, cache_dir=tmp_path / "cache")
    assert "no images found" in str(caught.value)
    assert ".jpg" in str(caught.value)
    assert ".webp" in str(caught.value)


def test_zip_without_images_is_an_error(tmp_path):
    zip_path = make_zip(tmp_path / "faces.zip", {"readme.txt": b"hello"})
    with pytest.raises(DataError, match="no images found"):
        load(zip_path, cache_dir=tmp_path / "cache")


def test_not_a_zip_is_an_error(tmp_path):
    fake = write(tmp_path / "faces.zip", b"<html>404 not found</html>")
    with pytest.raises(DataError, match="re-download"):
        load(fake, cache_dir=tmp_path / "cache")


def test_truncated_zip_is_an_error(tmp_path):
    zip_path = make_zip(tmp_path / "faces.zip", course_members([RED, GREEN, BLUE]))
    zip_path.write_bytes(zip_path.read_bytes()[: zip_path.stat().st_size // 2])
    with pytest.raises(DataError) as caught:
        load(zip_path, cache_dir=tmp_path / "cache")
    assert "zip" in str(caught.value)
    assert "re-download" in str(caught.value)


@pytest.mark.parametrize("image_size", [0, 8, 24, 48, 512, -32, 32.0, True, "32"])
def test_bad_image_size_is_a_config_error(tmp_path, image_size):
    with pytest.raises(ConfigError, match="power of two"):
        load_faces("synthetic", image_size, cache_dir=tmp_path)


@pytest.mark.parametrize("n_images", [0, -5, 2.5])
def test_bad_n_images_is_a_config_error(tmp_path, n_images):
    with pytest.raises(ConfigError, match="n_images"):
        load_faces("synthetic", 16, n_images=n_images, cache_dir=tmp_path)


def test_numpy_integers_are_accepted(tmp_path):
    faces = load("synthetic", np.int64(16), n_images=np.int64(2), cache_dir=tmp_path)
    assert faces.images.shape == (2, 16, 16, 3)
