"""Every documented flag of python -m facegan, through the real program, at tiny settings.

The cases come from the parsers themselves: a flag added later is tried with its own default
(a switch: switched on) in the shared training run, so it is covered without anyone writing a
case for it. FLAG_CASES gives the flags whose default would not be tiny, and those tried in a
run of their own, and BAD_VALUES a deliberately wrong value for some, which must be refused
with exit code 2 and one clear line. No case may print a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from facegan.__main__ import build_parser
from facegan.checkpoint import load_checkpoint
from facegan.download import URLS_ENV
from facegan.synthfaces import render_faces

COMMANDS = ("train", "sample", "eval", "report", "data")
N_FACES = 128
# Flags every tiny training run takes. A folder of images, not the built-in faces, keeps the
# evaluation during training cheap: the attribute classifier is for built-in faces only.
TINY = {
    "--image-size": "16",
    "--n-images": str(N_FACES),
    "--batch-size": "16",
    "--z-size": "8",
    "--conv-dim": "4",
    "--n-samples": "4",
    "--epochs": "1",
}
# The shared run: the flags tried together in one training run, besides TINY and each flag
# that has no case here (given its default). Sample, eval and resume read its checkpoint.
SHARED = {
    "--seed": "3",
    "--device": "cpu",
    "--precision": "fp32",
    "--lr": "0.0001",
    "--beta1": "0.4",
    "--beta2": "0.99",
    "--smooth": None,
    "--loss": "lsgan",
    "--ema": "0.9",
    "--flip": None,
    "--eval-every": "1",
    "--eval-n": "100",  # the face-embedding measures need 50 faces and 2 x 50 real ones
    "--log-every": "2",
    "--checkpoint-every": "2",
    "--channels-last": "off",
    "--threads": "1",
    "--no-progress": None,
}
# Flags tried in a run of their own, because they do not go with the shared run's.
SEPARATE = {
    "wgan-gp": {"--loss": "wgan-gp", "--d-norm": "none", "--gp-weight": "5"},
    "resume": {"--resume": None, "--allow-changes": None, "--epochs": "2", "--lr": "0.0003"},
}
# The flags each command's other cases give: (flag, value or None for a switch).
OTHER = {
    "sample": {"--n": "9", "--seed": "1"},  # --checkpoint and --out are the test's own
    "eval": {"--n": "16", "--metrics": "faces_found", "--seed": "1", "--no-progress": None},
    "data": {"--no-progress": None},
}
# (command, flag) -> (value, words the refusal must contain): one of each kind of refusal (the
# parser's, TrainConfig's, the command's); test_cli.py and test_reliability.py hold more.
BAD_VALUES = {
    ("train", "--epochs"): ("ten", "invalid int value"),
    ("train", "--lr"): ("fast", "invalid float value"),
    ("train", "--ema"): ("1.5", "ema must be a decay"),
    ("train", "--allow-changes"): (None, "only applies to a resume"),
    # torch.compile is not tried on 2 cores; its one refusal shows the flag reaches the check.
    ("train", "--compile"): (None, "compile cannot train loss wgan-gp"),
    ("train", "--sync-bn"): (None, "--sync-bn needs CUDA"),  # the bad case trains on the CPU
    ("sample", "--n"): ("0", "--n must be at least 1"),
    ("eval", "--metrics"): ("faces,sharpness", "unknown"),
    ("eval", "--n"): ("1", "--n must be at least 2"),
    ("report", "--parameter"): ("EPOCH 3", "has no parameter EPOCH (did you mean EPOCHS?)"),
    ("report", "--notebook"): ("no/such.ipynb", "does not exist"),
}


def documented_flags() -> dict[str, list[argparse.Action]]:
    """Each command's optional arguments, as its parser defines them (help left out)."""
    commands = next(
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    return {
        name: [
            action
            for action in commands.choices[name]._actions
            if action.option_strings and not isinstance(action, argparse._HelpAction)
        ]
        for name in COMMANDS
    }


def long_name(action: argparse.Action) -> str:
    return max(action.option_strings, key=len)


def train_flags() -> dict[str, str | None]:
    """The shared run's flags: SHARED, and every other train flag at its default."""
    given = {**TINY, **SHARED}
    covered = set(given) | {flag for case in SEPARATE.values() for flag in case}
    covered |= {"--out"} | {flag for command, flag in BAD_VALUES if command == "train"}
    for action in documented_flags()["train"]:
        flag = long_name(action)
        if flag not in covered:
            given[flag] = None if action.nargs == 0 else str(action.default)
    return given


def as_args(flags: dict[str, str | None]) -> list[str]:
    return [part for flag, value in flags.items() for part in (flag, value) if part is not None]


def facegan(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """python -m facegan ARGS as a new program, with one torch thread."""
    result = subprocess.run(
        [sys.executable, "-m", "facegan", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def succeeds(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = facegan(*args, env=env)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("flags")


@pytest.fixture(scope="module")
def faces(workspace) -> Path:
    """A folder of face images to train on."""
    folder = workspace / "faces"
    folder.mkdir()
    images, _ = render_faces(N_FACES, image_size=16, seed=0)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def shared_run(workspace, faces) -> Path:
    """One tiny run with every shared flag; the cases that only read it share it."""
    run = workspace / "shared"
    flags = train_flags() | {"--data": str(faces)}
    result = succeeds("train", *as_args(flags), "--out", str(run))
    assert "d_loss" in result.stdout  # the summary line, though the last row is an evaluation
    return run


def test_the_cases_name_only_flags_the_parsers_define():
    flags = {(name, long_name(a)) for name, actions in documented_flags().items() for a in actions}
    named = {("train", flag) for flag in {**TINY, **SHARED}}
    named |= {("train", flag) for case in SEPARATE.values() for flag in case}
    named |= {(command, flag) for command, case in OTHER.items() for flag in case}
    assert named | set(BAD_VALUES) <= flags


def test_every_train_flag_of_the_shared_run_reaches_the_recorded_settings(shared_run, faces):
    recorded = json.loads((shared_run / "config.json").read_text())
    flags = train_flags() | {"--data": str(faces), "--out": str(shared_run)}
    parsed = vars(build_parser().parse_args(["train", *as_args(flags)]))
    assert {name: parsed[name] for name in recorded} == recorded
    rows = [json.loads(line) for line in (shared_run / "history.jsonl").read_text().splitlines()]
    assert rows[-1]["kind"] == "eval"  # so the summary line had to find the last training row
    assert (shared_run / "checkpoints" / "best.pt").is_file()


def test_a_wgan_gp_run_takes_its_own_flags(workspace, faces):
    run = workspace / "wgan"
    flags = {**TINY, "--data": str(faces), **SEPARATE["wgan-gp"], "--no-progress": None}
    succeeds("train", *as_args(flags), "--out", str(run))
    recorded = json.loads((run / "config.json").read_text())
    assert (recorded["loss"], recorded["d_norm"], recorded["gp_weight"]) == ("wgan-gp", "none", 5)


def test_resume_with_allowed_changes_continues_and_records_them(workspace, shared_run, faces):
    run = workspace / "resumed"
    shutil.copytree(shared_run, run)
    flags = train_flags() | {"--data": str(faces)} | SEPARATE["resume"]
    succeeds("train", *as_args(flags), "--out", str(run))
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 2
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    (change,) = [row for row in history if row["kind"] == "change"]
    assert change["changes"] == {"lr": [0.0001, 0.0003]}  # epochs may change freely
    assert json.loads((run / "config.json").read_text())["epochs"] == 2


def test_sample_takes_every_flag(shared_run, tmp_path):
    grid = tmp_path / "grid.png"
    checkpoint = shared_run / "checkpoints" / "last.pt"
    args = as_args(OTHER["sample"])
    result = succeeds("sample", "--checkpoint", str(checkpoint), *args, "--out", str(grid))
    assert "wrote 9 faces" in result.stdout and Image.open(grid).size == (8 * 18 + 2, 2 * 18 + 2)


def test_eval_takes_every_flag(shared_run, faces, tmp_path):
    written = tmp_path / "metrics.json"
    checkpoint = shared_run / "checkpoints" / "best.pt"
    args = ["--checkpoint", str(checkpoint), "--data", str(faces), *as_args(OTHER["eval"])]
    result = succeeds("eval", *args, "--json", str(written))
    assert json.loads(written.read_text())["n"] == 16 and "faces_found" in result.stdout


@pytest.mark.parametrize(
    ("command", "flag"), sorted(BAD_VALUES), ids=[" ".join(case) for case in sorted(BAD_VALUES)]
)
def test_a_bad_value_is_refused_with_one_clear_line(command, flag, shared_run, tmp_path):
    value, words = BAD_VALUES[(command, flag)]
    bad = [flag, *(value.split() if value else [])]
    if command == "train":
        base = {**TINY, "--device": "cpu", "--no-progress": None, "--out": str(tmp_path / "run")}
        if flag == "--compile":
            base |= SEPARATE["wgan-gp"]
        args = ["train", *as_args(base), *bad]
    elif command == "sample":
        checkpoint = str(shared_run / "checkpoints" / "last.pt")
        args = ["sample", "--checkpoint", checkpoint, *bad, "--out", str(tmp_path / "run.png")]
    elif command == "eval":
        checkpoint = str(shared_run / "checkpoints" / "last.pt")
        args = ["eval", "--checkpoint", checkpoint, *bad, "--no-progress"]
    else:
        args = ["report", *bad, "--out-dir", str(tmp_path / "reports")]
    result = facegan(*args)
    assert result.returncode == 2 and words in result.stderr, result.stderr
    assert not {"run", "run.png", "reports"} & {path.name for path in tmp_path.iterdir()}


def test_report_refuses_a_wrong_type_and_a_value_out_of_range_before_running(tmp_path):
    for parameter, words in (
        (["EPOCHS", "ten"], "EPOCHS takes a whole number or None, got 'ten'"),
        (["EPOCHS", "0"], "epochs must be a positive whole number"),
    ):
        result = facegan("report", "-p", *parameter, "--out-dir", str(tmp_path))
        assert result.returncode == 2 and words in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


class Serve(BaseHTTPRequestHandler):
    """Serves the server's `body` at any path."""

    def do_GET(self) -> None:
        body = self.server.body
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def loopback(faces, tmp_path) -> Iterator[str]:
    """The URL of a zip of faces, on a server at 127.0.0.1."""
    archive = shutil.make_archive(str(tmp_path / "faces"), "zip", faces.parent, faces.name)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Serve)
    httpd.body = Path(archive).read_bytes()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/processed-celeba-small.zip"
    httpd.shutdown()
    httpd.server_close()


def test_data_download_takes_every_flag_against_a_loopback_server(loopback, tmp_path):
    """The served zip is far smaller than CelebA, so the download is refused as a bad copy."""
    target = tmp_path / "data"
    args = ["data", "download", "celeba", "--data-dir", str(target), *as_args(OTHER["data"])]
    result = facegan(*args, env={URLS_ENV: loopback})
    assert result.returncode == 2 and "holds 128 images" in result.stderr, result.stderr
    assert sorted(path.name for path in target.iterdir()) == []  # the part file is removed


def test_data_download_with_every_flag_finds_a_copy_already_there(faces, tmp_path):
    target = tmp_path / "data"
    shutil.copytree(faces, target / "processed_celeba_small" / "celeba")
    args = ["data", "download", "celeba", "--data-dir", str(target), *as_args(OTHER["data"])]
    result = succeeds(*args, env={URLS_ENV: "http://127.0.0.1:9/processed-celeba-small.zip"})
    assert f"CelebA: {target / 'processed_celeba_small' / 'celeba'}" in result.stdout


def test_data_download_refuses_an_unknown_data_set(tmp_path):
    result = facegan("data", "download", "mnist", "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2 and "invalid choice: 'mnist'" in result.stderr
