"""Face images: sizes, batch checks, uint8 <-> float, and sample grids."""

import numpy as np
import pytest
import torch
from PIL import Image

from facegan.errors import ConfigError
from facegan.images import (
    GRID_PADDING,
    IMAGE_SIZES,
    check_face_images,
    check_image_size,
    save_grid,
    to_float,
    to_uint8,
)


def test_image_sizes_are_the_powers_of_two_from_16_to_256():
    assert IMAGE_SIZES == (16, 32, 64, 128, 256)
    assert check_image_size(np.int64(64)) == 64 and type(check_image_size(np.int64(64))) is int


@pytest.mark.parametrize("bad", [0, 12, 48, 512, 32.0, True, "32", None])
def test_other_sizes_are_refused_with_the_choices(bad):
    with pytest.raises(ConfigError, match="not supported: choose a power of two from 16 to 256"):
        check_image_size(bad)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((2, 32, 32, 3), np.float32), "uint8 numpy array"),
        (torch.zeros((2, 32, 32, 3), dtype=torch.uint8), "uint8 numpy array"),
        (np.zeros((2, 3, 32, 32), np.uint8), "looks like NCHW"),
        (np.zeros((2, 32, 16, 3), np.uint8), "square RGB"),
        (np.zeros((1, 32, 32, 3), np.uint8), "need at least 2 images, got 1"),
    ],
)
def test_face_batches_other_than_uint8_nhwc_are_refused_by_name(images, message):
    with pytest.raises(ConfigError, match=message):
        check_face_images(images, "the faces", minimum=2)


def test_to_float_makes_contiguous_nchw_in_range():
    batch = torch.zeros(2, 4, 4, 3, dtype=torch.uint8)
    batch[1, 2, 3] = torch.tensor([255, 0, 51], dtype=torch.uint8)
    out = to_float(batch)
    assert out.shape == (2, 3, 4, 4)
    assert out.dtype == torch.float32
    assert out.is_contiguous()
    torch.testing.assert_close(out[1, :, 2, 3], torch.tensor([1.0, -1.0, 51 / 127.5 - 1]))
    assert out.min() == -1.0
    assert out.max() == 1.0


def test_to_float_rejects_float_input():
    with pytest.raises(TypeError):
        to_float(torch.zeros(1, 4, 4, 3))


def test_to_uint8_rounds_like_the_saved_png():
    images = torch.tensor([-1.0, -0.999, 0.0, 1.0]).reshape(1, 1, 1, 4).expand(1, 3, 1, 4)
    assert to_uint8(images)[0, 0, :, 0].tolist() == [0, 0, 128, 255]


@pytest.mark.parametrize("count", [4, 9, 64])
def test_sample_grids_are_torchvisions_save_image_to_the_byte(tmp_path, count):
    from torchvision.utils import save_image

    images = torch.randn(count, 3, 16, 16, generator=torch.Generator().manual_seed(count)) * 1.5
    save_image(images, tmp_path / "torchvision.png", normalize=True, value_range=(-1, 1))
    save_grid(images, tmp_path / "facegan.png")
    assert (tmp_path / "facegan.png").read_bytes() == (tmp_path / "torchvision.png").read_bytes()


def test_a_grid_of_one_face_is_torchvisions_image_with_the_grid_border(tmp_path):
    from torchvision.utils import save_image

    image = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 1.5
    # torchvision saves a lone image without the grid's padding; save_grid keeps it.
    save_image(image, tmp_path / "torchvision.png", normalize=True, value_range=(-1, 1))
    save_grid(image, tmp_path / "one.png")
    pixels = np.asarray(Image.open(tmp_path / "one.png"))
    pad = GRID_PADDING
    assert pixels.shape == (16 + 2 * pad, 16 + 2 * pad, 3)
    alone = np.asarray(Image.open(tmp_path / "torchvision.png"))
    assert np.array_equal(pixels[pad:-pad, pad:-pad], alone)
    border = pixels.copy()
    border[pad:-pad, pad:-pad] = 0
    assert not border.any()
