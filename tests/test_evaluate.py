"""Evaluation: the Evaluator's verdicts, the main metric, and best.pt during training."""

import numpy as np
import pytest
import torch

from facegan.checkpoint import load_checkpoint, read_history
from facegan.config import TrainConfig
from facegan.data import load_faces
from facegan.errors import ConfigError
from facegan.evaluate import (
    CPU_TRAINING_METRICS,
    FID_SKIPPED,
    METRICS,
    Evaluator,
    best_evaluation,
    draw_faces,
    is_better,
    main_metric,
    training_metrics,
)
from facegan.images import to_uint8
from facegan.models import Generator, sample_images
from facegan.synthfaces import render_faces
from facegan.trainer import Trainer

SIZE = 32  # the coverage classifier for 32 px is trained once per session and cached


class ColourFeatures:
    """A cheap stand-in for Inception: per-image mean colour and 4x4 mean-colour grid."""

    name = "colour-grid-test"

    def __call__(self, images: np.ndarray) -> np.ndarray:
        pooled = images.reshape(len(images), 4, SIZE // 4, 4, SIZE // 4, 3).mean(axis=(2, 4))
        return pooled.reshape(len(images), -1).astype(np.float64)


@pytest.fixture(scope="module")
def real() -> np.ndarray:
    return render_faces(600, SIZE, seed=0)[0]


@pytest.fixture(scope="module")
def evaluator(real) -> Evaluator:
    return Evaluator(real, True, "test-real-600", extractor=ColourFeatures(), progress=False)


def test_real_faces_score_near_the_real_bound_on_every_metric(evaluator):
    held_out = render_faces(600, SIZE, seed=5)[0]
    result = evaluator(held_out)
    assert result["faces_found_ratio"] > 0.9
    assert result["mode_coverage"] > 0.9
    assert result["attribute_kl"] < 0.1
    assert result["main_metric"] == "fid"


def test_collapsed_and_noise_generators_score_clearly_worse_on_every_metric(evaluator):
    good = evaluator(render_faces(600, SIZE, seed=5)[0])
    collapsed = np.repeat(render_faces(1, SIZE, seed=9)[0], 600, axis=0)
    noise = np.random.default_rng(0).integers(0, 256, (600, SIZE, SIZE, 3), dtype=np.uint8)
    for bad in (evaluator(collapsed), evaluator(noise)):
        assert bad["mode_coverage"] < 0.5 * good["mode_coverage"]
        assert bad["attribute_kl"] > 10 * good["attribute_kl"]
        assert bad["fid"] > 2 * good["fid"]
        assert not is_better(bad, good) and is_better(good, bad)
    assert evaluator(noise)["faces_found_ratio"] < 0.2


def test_main_metric_falls_back_from_fid_to_attribute_kl_to_faces_found_ratio():
    assert main_metric({"fid": 3.0, "attribute_kl": 1.0}) == ("fid", False)
    assert main_metric({"fid": None, "attribute_kl": 1.0}) == ("attribute_kl", False)
    assert main_metric({"fid": None, "faces_found_ratio": 0.5}) == ("faces_found_ratio", True)
    with pytest.raises(ConfigError, match="no metric"):
        main_metric({"n": 10})
    assert is_better({"faces_found_ratio": 0.6}, {"faces_found_ratio": 0.5})
    assert is_better({"attribute_kl": 0.5}, {"attribute_kl": 0.6})
    assert is_better({"attribute_kl": 0.5}, None)


def test_evaluator_refuses_unknown_metrics_and_other_sizes(real):
    with pytest.raises(ConfigError, match="unknown"):
        Evaluator(real, True, "k", metrics=["fidd"])
    faces_only = Evaluator(real, True, "k", metrics=["faces_found"], progress=False)
    with pytest.raises(ConfigError, match="evaluate at the training size"):
        faces_only(render_faces(4, 16)[0])


def test_training_evaluates_on_schedule_and_keeps_the_best_checkpoint(tmp_path):
    faces = load_faces("synthetic", SIZE, n_images=128, progress=False)
    config = TrainConfig(
        image_size=SIZE, epochs=3, batch_size=32, z_size=8, conv_dim=4, n_samples=4,
        eval_every=2, eval_n=64, out=str(tmp_path / "run"),
    )  # fmt: skip
    trainer = Trainer(config, faces)
    history = trainer.fit(progress=False)
    evaluations = [row for row in history if row["kind"] == "eval"]
    assert [row["epoch"] for row in evaluations] == [2, 3]  # every 2 epochs and after the last
    assert evaluations[0]["fid_unavailable"] == FID_SKIPPED  # CPU training leaves FID out
    assert read_history(trainer.run_dir) == history
    best = best_evaluation(history)
    kept = load_checkpoint(trainer.best_path)
    assert kept["epoch"] == best["epoch"]
    assert [row for row in kept["history"] if row["kind"] == "eval"][-1] == best


def test_a_worse_evaluation_leaves_best_pt_alone(tmp_path, monkeypatch):
    faces = load_faces("synthetic", SIZE, n_images=128, progress=False)
    scores = iter([0.2, 0.9, 0.5])  # attribute KL per evaluation: epoch 1 is the best

    class Scripted:
        metrics = ("coverage",)

        def __call__(self, generated):
            return {"n": len(generated), "attribute_kl": next(scores), "main_metric": "x"}

    config = TrainConfig(
        image_size=SIZE, epochs=3, batch_size=32, z_size=8, conv_dim=4, n_samples=4,
        eval_every=1, eval_n=8, out=str(tmp_path / "run"),
    )  # fmt: skip
    trainer = Trainer(config, faces, evaluator=Scripted())
    trainer.fit(progress=False)
    assert load_checkpoint(trainer.best_path)["epoch"] == 1
    assert load_checkpoint(trainer.checkpoint_path)["epoch"] == 3


def test_faces_is_still_a_name_of_the_faces_found_measure(real):
    evaluator = Evaluator(real, True, "k", metrics=["faces"], progress=False)
    assert evaluator.metrics == ("faces_found",)
    result = evaluator(real[:20])
    assert result["faces_found"] == result["faces_found_real"]
    assert result["main_metric"] == "faces_found_ratio"


def test_drawn_faces_are_the_seeds_faces_whatever_the_batching():
    torch.manual_seed(0)
    generator = Generator(8, 4, 16)
    faces = draw_faces(generator, 600, seed=3)  # batches of EVAL_BATCH and a rest
    assert faces.shape == (600, 16, 16, 3) and faces.dtype == np.uint8
    z = torch.randn(600, 8, generator=torch.Generator().manual_seed(3))
    assert np.array_equal(faces, to_uint8(sample_images(generator, z)))
    assert not np.array_equal(draw_faces(generator, 600, seed=4), faces)
    assert generator.training


def test_training_leaves_fid_to_the_gpu():
    assert training_metrics(torch.device("cpu")) == CPU_TRAINING_METRICS
    assert "fid" not in CPU_TRAINING_METRICS
    assert training_metrics(torch.device("cuda")) == METRICS


def test_without_inception_fid_is_reported_unavailable_and_kl_ranks(real, monkeypatch, tmp_path):
    """What an evaluation during GPU training meets on a machine without the weights file."""
    monkeypatch.setenv("FACEGAN_INCEPTION_WEIGHTS", str(tmp_path / "absent.pth"))
    evaluator = Evaluator(real[:100], True, "no-inception", progress=False)
    result = evaluator(render_faces(100, SIZE, seed=5)[0])
    assert result["fid"] is None and "absent.pth" in result["fid_unavailable"]
    assert result["main_metric"] == "attribute_kl"
