"""python -m facegan: train, sample and eval from the shell; bad input exits 2 with one line."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from facegan.__main__ import main
from facegan.synthfaces import render_faces

SIZE = 32  # the coverage classifier for 32 px is trained once per session and cached
TINY = [
    "--image-size",
    "16",
    "--n-images",
    "64",
    "--batch-size",
    "16",
    "--z-size",
    "8",
    "--conv-dim",
    "4",
    "--n-samples",
    "4",
    "--no-progress",
]


def test_train_then_sample_writes_a_grid(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(run)]) == 0
    assert "D(G(z))" in capsys.readouterr().out
    grid = tmp_path / "grid.png"
    checkpoint = run / "checkpoints" / "last.pt"
    assert main(["sample", "--checkpoint", str(checkpoint), "--n", "9", "--out", str(grid)]) == 0
    # 9 faces of 16 px in rows of 8, with torchvision's 2 px padding.
    assert Image.open(grid).size == (8 * 18 + 2, 2 * 18 + 2)


def test_a_run_that_ends_with_an_evaluation_reports_its_last_training_step(tmp_path, capsys):
    args = ["train", *TINY, "--image-size", str(SIZE), "--epochs", "1", "--eval-every", "1"]
    assert main([*args, "--eval-n", "32", "--out", str(tmp_path / "run")]) == 0
    assert "step 4: d_loss" in capsys.readouterr().out


@pytest.fixture
def photo_folder(tmp_path):
    """A folder of 120 face images: real data to train on, decoded on first use."""
    folder = tmp_path / "photos"
    folder.mkdir()
    images, _ = render_faces(120, image_size=16, seed=0)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    return folder


def test_no_progress_hides_the_decoding_bar_as_well_as_trainings(tmp_path, capsys, photo_folder):
    args = ["train", *TINY, "--data", str(photo_folder), "--epochs", "1"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "decoding images" not in err and "it/s" not in err


def test_an_eval_n_too_small_for_the_face_measures_is_refused_before_training(
    tmp_path, capsys, photo_folder
):
    run = tmp_path / "run"
    args = ["train", *TINY, "--data", str(photo_folder), "--eval-every", "1", "--eval-n", "60"]
    assert main([*args, "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "need at least 50 generated faces and 100 real ones" in err, err
    assert not run.exists()  # refused before the run folder was made


def test_resume_continues_a_run_to_more_epochs(tmp_path):
    run = str(tmp_path / "run")
    assert main(["train", *TINY, "--epochs", "1", "--out", run]) == 0
    assert main(["train", *TINY, "--epochs", "2", "--out", run, "--resume"]) == 0
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == [
        "epoch_001.png",
        "epoch_002.png",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--image-size", "48"], "image_size 48 is not supported"),
        (["train", "--batch-size", "0"], "batch_size must be a positive"),
        (["train", "--epochs", "0"], "epochs must be a positive"),
        (["train", "--device", "tpu"], "device 'tpu' is unknown"),
        (["train", "--data", "no/such/folder"], "does not exist"),
        (["sample", "--checkpoint", "no/such.pt"], "does not exist"),
    ],
)
def test_bad_input_prints_one_clear_line_and_exits_2(args, message, capsys, tmp_path):
    assert main([*args, "--out", str(tmp_path / "x.png")] if args[0] == "sample" else args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err


def test_the_module_runs_as_a_program_without_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "facegan", "train", "--image-size", "20", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "power of two" in result.stderr and "Traceback" not in result.stderr


def test_an_interrupt_outside_training_exits_130_without_a_traceback(monkeypatch, capsys):
    import facegan.__main__ as cli

    def interrupted(_args):
        raise KeyboardInterrupt  # a second Ctrl-C, or one while the data loads

    monkeypatch.setattr(cli, "run_train", interrupted)
    assert main(["train"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("error: interrupted") and "Traceback" not in err


def test_the_flags_reach_the_config_and_bad_values_exit_2(tmp_path, capsys):
    assert main(["train", "--channels-last", "sideways", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "channels_last 'sideways' is unknown" in err and "Traceback" not in err
    assert main(["train", "--threads", "-2", "--out", str(tmp_path)]) == 2
    assert "threads must be 0 (auto)" in capsys.readouterr().err


def test_the_command_line_passes_every_recipe_option(tmp_path):
    run = tmp_path / "run"
    tiny = ["--image-size", "16", "--n-images", "32", "--batch-size", "16", "--z-size", "8"]
    tiny += ["--conv-dim", "4", "--epochs", "1", "--no-progress", "--out", str(run)]
    recipe = ["--loss", "hinge", "--d-norm", "spectral", "--ema", "0.9", "--flip"]
    assert main(["train", *tiny, *recipe]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert (saved["loss"], saved["d_norm"], saved["ema"], saved["flip"]) == (
        "hinge",
        "spectral",
        0.9,
        True,
    )


def test_eval_command_prints_and_writes_the_metrics(tmp_path, capsys):
    run = tmp_path / "run"
    train = ["train", "--image-size", str(SIZE), "--n-images", "64", "--batch-size", "32"]
    train += ["--z-size", "8", "--conv-dim", "4", "--epochs", "1", "--no-progress"]
    assert main([*train, "--out", str(run)]) == 0
    out = tmp_path / "metrics.json"
    checkpoint = str(run / "checkpoints" / "last.pt")
    args = ["eval", "--checkpoint", checkpoint, "--n", "50", "--metrics", "faces_found,coverage"]
    assert main([*args, "--json", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    written = json.loads(out.read_text())
    assert written["n"] == 50 and written["main_metric"] == "attribute_kl"
    assert "faces_found_ratio" in printed and "mode_coverage" in printed


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
