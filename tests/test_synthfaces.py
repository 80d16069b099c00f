"""The procedural face set: shapes, purity per face index, attribute coverage, detectability."""

import numpy as np
import pytest

from facegan.errors import ConfigError
from facegan.facedetect import faces_found
from facegan.synthfaces import ATTRIBUTES, RENDERER_VERSION, render_faces


@pytest.mark.parametrize("size", [16, 32, 64, 256])
def test_images_and_attributes_have_the_documented_shapes(size):
    images, attributes = render_faces(5, image_size=size)
    assert images.shape == (5, size, size, 3)
    assert images.dtype == np.uint8
    assert set(attributes) == set(ATTRIBUTES)
    for values in attributes.values():
        assert values.shape == (5,)
        assert np.issubdtype(values.dtype, np.integer)


def test_zero_faces_gives_empty_arrays():
    images, attributes = render_faces(0, image_size=32)
    assert images.shape == (0, 32, 32, 3)
    assert all(len(values) == 0 for values in attributes.values())


def test_renderer_version_is_a_non_empty_string():
    assert isinstance(RENDERER_VERSION, str) and RENDERER_VERSION


def test_rendering_is_deterministic():
    first, first_attributes = render_faces(8, image_size=32, seed=3)
    second, second_attributes = render_faces(8, image_size=32, seed=3)
    np.testing.assert_array_equal(first, second)
    for name in ATTRIBUTES:
        np.testing.assert_array_equal(first_attributes[name], second_attributes[name])


def test_each_face_depends_only_on_seed_and_index():
    whole, whole_attributes = render_faces(12, image_size=32, seed=7)
    part, part_attributes = render_faces(4, image_size=32, seed=7, start=5)
    np.testing.assert_array_equal(part, whole[5:9])
    for name in ATTRIBUTES:
        np.testing.assert_array_equal(part_attributes[name], whole_attributes[name][5:9])


def test_different_seeds_give_different_faces():
    first, _ = render_faces(4, image_size=32, seed=0)
    second, _ = render_faces(4, image_size=32, seed=1)
    assert all(not np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_faces_within_a_set_differ():
    images, _ = render_faces(16, image_size=32)
    flat = images.reshape(len(images), -1)
    assert len(np.unique(flat, axis=0)) == len(images)


def test_every_attribute_value_appears_and_none_is_out_of_range():
    # Rarest value: a beard style at 15%, so 1000 faces miss one with odds of about 1e-70.
    _, attributes = render_faces(1000, image_size=16, seed=11)
    for name, count in ATTRIBUTES.items():
        values = attributes[name]
        assert values.min() >= 0 and values.max() < count, name
        assert set(np.unique(values)) == set(range(count)), name


def test_attribute_values_match_what_was_asked_for():
    assert ATTRIBUTES["skin"] >= 6
    assert ATTRIBUTES["hair_colour"] >= 5
    assert ATTRIBUTES["hair_style"] >= 3
    assert ATTRIBUTES["iris"] >= 3


@pytest.mark.parametrize("size", [8, 24, 48, 100, 512])
def test_unsupported_image_size_is_a_config_error(size):
    with pytest.raises(ConfigError, match=rf"image_size {size} is not supported.*16 to 256"):
        render_faces(1, image_size=size)


@pytest.mark.parametrize("request_", [dict(n=-1), dict(n=1, seed=-1), dict(n=1, start=-1)])
def test_negative_count_seed_or_start_is_a_config_error(request_):
    with pytest.raises(ConfigError, match="zero or more"):
        render_faces(**request_)


def test_the_haar_cascade_finds_most_faces_at_32px():
    images, _ = render_faces(200, image_size=32, seed=123)
    assert faces_found(images) >= 0.8
