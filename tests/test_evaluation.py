"""Evaluation: the Evaluator's verdicts, evaluation during training, best.pt and `eval`."""

import json

import numpy as np
import pytest
import torch

from facegan.__main__ import main
from facegan.data import load_faces
from facegan.errors import ConfigError
from facegan.metrics import FID_SKIPPED, Evaluator, is_better, main_metric, to_uint8
from facegan.synthfaces import render_faces
from facegan.train import TrainConfig, Trainer, best_evaluation, load_checkpoint, read_history

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
    assert result["face_rate_ratio"] > 0.9
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
    assert evaluator(noise)["face_rate_ratio"] < 0.2


def test_main_metric_falls_back_from_fid_to_attribute_kl_to_face_ratio():
    assert main_metric({"fid": 3.0, "attribute_kl": 1.0}) == ("fid", False)
    assert main_metric({"fid": None, "attribute_kl": 1.0}) == ("attribute_kl", False)
    assert main_metric({"fid": None, "face_rate_ratio": 0.5}) == ("face_rate_ratio", True)
    with pytest.raises(ConfigError, match="no metric"):
        main_metric({"n": 10})
    assert is_better({"face_rate_ratio": 0.6}, {"face_rate_ratio": 0.5})
    assert is_better({"attribute_kl": 0.5}, {"attribute_kl": 0.6})
    assert is_better({"attribute_kl": 0.5}, None)


def test_evaluator_refuses_unknown_metrics_and_other_sizes(real):
    with pytest.raises(ConfigError, match="unknown"):
        Evaluator(real, True, "k", metrics=["fidd"])
    faces_only = Evaluator(real, True, "k", metrics=["faces"], progress=False)
    with pytest.raises(ConfigError, match="evaluate at the training size"):
        faces_only(render_faces(4, 16)[0])


def test_to_uint8_rounds_like_the_saved_png():
    images = torch.tensor([-1.0, -0.999, 0.0, 1.0]).reshape(1, 1, 1, 4).expand(1, 3, 1, 4)
    assert to_uint8(images)[0, 0, :, 0].tolist() == [0, 0, 128, 255]


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


def test_eval_command_prints_and_writes_the_metrics(tmp_path, capsys):
    run = tmp_path / "run"
    train = ["train", "--image-size", str(SIZE), "--n-images", "64", "--batch-size", "32"]
    train += ["--z-size", "8", "--conv-dim", "4", "--epochs", "1", "--no-progress"]
    assert main([*train, "--out", str(run)]) == 0
    out = tmp_path / "metrics.json"
    checkpoint = str(run / "checkpoints" / "last.pt")
    args = ["eval", "--checkpoint", checkpoint, "--n", "50", "--metrics", "faces,coverage"]
    assert main([*args, "--json", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    written = json.loads(out.read_text())
    assert written["n"] == 50 and written["main_metric"] == "attribute_kl"
    assert "face_rate_ratio" in printed and "mode_coverage" in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n", "1"], "--n must be at least 2"),
        (["--metrics", "faces,sharpness"], "unknown"),
    ],
)
def test_eval_command_refuses_bad_arguments(tmp_path, capsys, args, message):
    run = tmp_path / "run"
    train = ["train", "--image-size", "16", "--n-images", "32", "--batch-size", "16"]
    train += ["--z-size", "8", "--conv-dim", "4", "--epochs", "1", "--no-progress"]
    assert main([*train, "--out", str(run)]) == 0
    checkpoint = str(run / "checkpoints" / "last.pt")
    assert main(["eval", "--checkpoint", checkpoint, *args, "--no-progress"]) == 2
    assert message in capsys.readouterr().err
