"""benchmarks/quality.py: its ranking and choice, and a tiny end-to-end run."""

import json
import shlex
import sys

import pytest

import benchmarks.quality
from benchmarks.record import RESULTS
from facegan.config import RECIPES, TrainConfig
from facegan.data import load_faces
from facegan.trainer import Trainer


@pytest.fixture(scope="module")
def quality():
    # Imported by its package name: the study's spawned workers import it so to find
    # run_variant.
    return benchmarks.quality


def result(data: str, variant: str, **metrics) -> dict:
    return {"data": data, "variant": variant, "metrics": metrics}


def test_ranks_follow_each_data_sets_main_metric_and_the_best_mean_rank_wins(quality):
    results = [
        result("synthetic", "vanilla", attribute_kl=0.8, faces_found_ratio=0.9),
        result("synthetic", "ema", attribute_kl=0.5, faces_found_ratio=0.7),
        result("synthetic", "flip", attribute_kl=1.5, faces_found_ratio=0.95),
        result("real.zip", "vanilla", faces_found_ratio=0.8),
        result("real.zip", "ema", faces_found_ratio=0.85),
        result("real.zip", "flip", faces_found_ratio=0.9),
    ]
    ranking = quality.rank(results)
    assert ranking["synthetic"]["metric"] == "attribute_kl"  # lower is better there
    assert ranking["synthetic"]["ranks"] == {"ema": 1, "vanilla": 2, "flip": 3}
    assert ranking["real.zip"]["metric"] == "faces_found_ratio"  # higher is better
    assert ranking["real.zip"]["ranks"] == {"flip": 1, "ema": 2, "vanilla": 3}
    assert quality.choose(ranking)["variant"] == "ema"  # mean rank 1.5


def test_a_tiny_study_runs_end_to_end_and_records_its_settings(quality, tmp_path):
    out = tmp_path / "quality.json"
    record = quality.main(
        ["--budget", "1", "--variants", "vanilla", "--eval-n", "64", "--jobs", "1"]
        + ["--synthetic-n", "256"]
        + ["--out", str(out)]
    )
    saved = json.loads(out.read_text())
    assert saved["choice"]["variant"] == "vanilla" == record["choice"]["variant"]
    (run,) = saved["results"]
    assert run["steps"] >= 1 and run["metrics"]["n"] == 64
    assert "attribute_kl" in run["metrics"] and saved["settings"]["budget_core_seconds"] == 1


def test_real_faces_are_ranked_by_the_face_distance(quality):
    results = [
        result("real.zip", "ema", face_distance=0.02, faces_found_ratio=0.99),
        result("real.zip", "ema-b32", face_distance=0.015, faces_found_ratio=0.98),
    ]
    ranking = quality.rank(results)["real.zip"]
    assert ranking["metric"] == "face_distance" and not ranking["higher_is_better"]
    assert ranking["ranks"] == {"ema-b32": 1, "ema": 2}


def test_real_data_trains_with_the_recipe_the_real_face_study_chose(quality):
    summary = json.loads((RESULTS / "quality-celeba-summary.json").read_text())
    chosen = summary["choice"]["settings"]
    # epochs is the report's length on the development set, not a setting the studies ranked.
    studied = {name: value for name, value in RECIPES["real"].items() if name != "epochs"}
    assert studied.items() <= chosen.items()
    assert TrainConfig(data="faces.zip").batch_size == chosen["batch_size"]
    assert TrainConfig().batch_size == quality.BASE["batch_size"]  # the built-in faces keep theirs
    assert TrainConfig(data="faces.zip", batch_size=48).batch_size == 48


def test_each_kind_of_data_trains_for_its_recipes_epochs_unless_told():
    assert (TrainConfig().epochs, TrainConfig(data="faces.zip").epochs) == (8, 20)
    assert TrainConfig(data="faces.zip", epochs=3).epochs == 3
    recorded = TrainConfig(data="faces.zip")
    assert TrainConfig(**vars(recorded)).epochs == 20  # a recorded config reads back the same


def test_recorded_runs_keep_their_evaluations_best_checkpoint_and_grid(quality, tmp_path):
    faces = load_faces("synthetic", 16, n_images=64, progress=False)
    scores = iter([0.3, 0.1])

    class Scripted:
        metrics = ("faceid",)

        def __call__(self, generated):
            return {"n": len(generated), "face_distance": next(scores), "main_metric": "x"}

    config = TrainConfig(
        image_size=16, epochs=2, batch_size=16, z_size=8, conv_dim=4, n_samples=4,
        eval_every=1, eval_n=8, out=str(tmp_path / "run"),
    )  # fmt: skip
    Trainer(config, faces, evaluator=Scripted()).fit(progress=False)
    grid, out = tmp_path / "grid.png", tmp_path / "runs.json"
    command = ["--record", "report", config.out, "python -m facegan train ..."]
    quality.main([*command, "--grid", str(grid), "--out", str(out)])
    (run,) = json.loads(out.read_text())["runs"]
    assert run["label"] == "report" and run["run_command"] == "python -m facegan train ..."
    assert [row["face_distance"] for row in run["evaluations"]] == [0.3, 0.1]
    assert run["best"]["epoch"] == 2 == run["final"]["epoch"]
    assert run["settings"]["batch_size"] == 16 and run["steps"] == 8
    assert grid.read_bytes() == (tmp_path / "run" / "samples" / "epoch_002.png").read_bytes()


def test_a_variant_with_its_own_learning_rate_per_network_trains_with_them(quality, tmp_path):
    faces = load_faces("synthetic", 32, n_images=64, progress=False)
    config = quality.variant_config("ema-b16-ttur", out=str(tmp_path / "run"))
    trainer = quality.variant_trainer(config, faces, "ema-b16-ttur")
    assert [g["lr"] for g in trainer.d_optimizer.param_groups] == [4e-4]
    assert [g["lr"] for g in trainer.g_optimizer.param_groups] == [1e-4]
    plain = quality.variant_trainer(quality.variant_config("ema-b16-lr4"), faces, "ema-b16-lr4")
    rates = [g["lr"] for o in (plain.d_optimizer, plain.g_optimizer) for g in o.param_groups]
    assert rates == [4e-4, 4e-4] and config.batch_size == 16


def test_a_run_the_study_starts_itself_is_timed_and_a_failed_one_records_nothing(quality, tmp_path):
    run, out = tmp_path / "run", tmp_path / "runs.json"
    rows = [
        {"kind": "train", "epoch": 1, "step": 4, "d_loss": 1.0},
        {"kind": "eval", "epoch": 1, "step": 4, "face_distance": 0.2, "main_metric": "x"},
    ]
    writes_a_run = (
        "import json, pathlib, time; folder = pathlib.Path(r'" + str(run) + "'); "
        "folder.mkdir(); time.sleep(0.5); "
        "(folder / 'config.json').write_text(json.dumps({'epochs': 1})); "
        "(folder / 'history.jsonl').write_text("
        + repr("\n".join(json.dumps(row) for row in rows) + "\n")
        + ")"
    )
    command = shlex.join([sys.executable, "-c", writes_a_run])
    quality.main(["--run", "made here", str(run), command, "--out", str(out)])
    (recorded,) = json.loads(out.read_text())["runs"]
    assert recorded["wall_seconds"] >= 0.5 and recorded["final"]["face_distance"] == 0.2
    failing = shlex.join([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(SystemExit, match="exited with 3: nothing recorded"):
        quality.main(["--run", "fails", str(run), failing, "--out", str(tmp_path / "no.json")])
    assert not (tmp_path / "no.json").exists()
