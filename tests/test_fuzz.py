"""Fuzzing: decode_image and load_faces turn any bytes into faces or a DataError, never a crash.

benchmarks/reliability.py runs the same checks with thousands of examples.
"""

from hypothesis import given, settings

from tests.support.faults import (
    check_decode,
    check_load_folder,
    folders,
    mutated_images,
    random_bytes,
)

# Explicit and derandomized so that CI is fast and repeatable; no example database on disk.
FAST = settings(max_examples=150, deadline=None, database=None, derandomize=True)


@FAST
@given(random_bytes)
def test_decode_image_on_random_bytes_returns_an_image_or_a_data_error(data):
    check_decode(data)


@FAST
@given(mutated_images)
def test_decode_image_on_mutated_jpeg_and_png_returns_an_image_or_a_data_error(data):
    check_decode(data, 32)


@settings(max_examples=40, deadline=None, database=None, derandomize=True)
@given(folders)
def test_load_faces_on_a_folder_of_random_files_loads_or_raises_a_data_error(files):
    check_load_folder(files)
