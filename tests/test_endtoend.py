"""benchmarks.endtoend and benchmarks.memory: whole programs timed, and the mapped cache's RAM."""

import argparse
import json

import numpy as np
import pytest

from benchmarks import endtoend, memory


def test_a_job_is_size_images_and_epochs():
    assert endtoend.Job.parse("32:10000:2") == endtoend.Job(32, 10_000, 2)
    with pytest.raises(argparse.ArgumentTypeError, match="SIZE:IMAGES:EPOCHS"):
        endtoend.Job.parse("32x10000")


def test_both_programs_get_the_same_job_and_facegan_only_its_defaults(tmp_path):
    job = endtoend.Job(64, 2000, 2)
    reference = endtoend.reference_command(tmp_path, job, tmp_path / "a")
    facegan = endtoend.facegan_command(tmp_path, job, tmp_path / "b")
    assert reference[1:3] == ["-m", "benchmarks.reference"]
    assert facegan[1:4] == ["-m", "facegan", "train"]
    shared = {"--image-size=64", "--epochs=2", "--batch-size=128", "--conv-dim=64"}
    assert shared <= set(reference) and shared <= set(facegan)
    # No speed setting: facegan runs as a user would start it.
    assert not any(flag.startswith(("--precision", "--threads", "--channels")) for flag in facegan)


def test_a_tiny_job_runs_both_programs_start_to_exit(tmp_path):
    out = tmp_path / "endtoend.json"
    record = endtoend.main(["--jobs", "16:256:1", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(record))
    (row,) = record["jobs"]
    assert row["seconds"]["a"] > 0 and row["seconds"]["b"] > 0
    assert row["ratio_b_over_a"] == pytest.approx(row["seconds"]["a"] / row["seconds"]["b"])
    assert row["peak_rss_mib"]["a"] > 0 and row["peak_rss_mib"]["b"] > 0


def test_the_tiled_cache_holds_the_distinct_faces_over_and_over(tmp_path):
    path = tmp_path / "faces.npy"
    memory.build_cache(path, images=10, size=16, distinct=4)
    images = np.load(path, mmap_mode="r")
    assert images.shape == (10, 16, 16, 3) and images.dtype == np.uint8
    assert np.array_equal(images[4:8], images[:4]) and np.array_equal(images[8:], images[:2])
    assert not np.array_equal(images[0], images[1])


def test_the_trainer_draws_from_the_map_itself_not_a_copy(tmp_path):
    path = tmp_path / "faces.npy"
    memory.build_cache(path, images=256, size=16, distinct=8)
    trained = memory.train_from_cache(path, steps=1)
    assert trained["images_are_mapped"]
    assert trained["steps"] == 1 and trained["seconds"] > 0
