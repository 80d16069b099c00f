"""Reliability: exact resume after a crash, kills that lose nothing, and bad input refused.

The kill tests SIGKILL the CLI: the real program, `python -m facegan train`, and for the
many random kills launches forked from a warm interpreter (tests/launcher.py), whose runs
must match the real program's bitwise. The machinery lives in tests/faults.py, which
benchmarks/reliability.py runs at full size.
"""

import hashlib
import random
import re
import signal
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import facegan.trainer as trainer_module
from facegan.checkpoint import generator_from_checkpoint, load_checkpoint
from facegan.config import TrainConfig
from facegan.data import load_faces
from facegan.errors import CheckpointError
from facegan.step import train_step
from facegan.trainer import Trainer
from tests.support.faults import (
    BAD_INPUTS,
    Reference,
    TinyRun,
    checkpoint_of,
    differences,
    encoded,
    invoke_in_process,
    invoke_program,
    kill_at_random_moments,
    make_zip,
    reference_run,
    refuse,
    run_differences,
    sample_args,
    sigkill,
    snapshot,
    touched_files,
    train_args,
    unreadable_images,
    wait_for_new_checkpoint,
    without_timing,
    write,
    write_malicious_checkpoint,
)
from tests.support.launcher import Launcher

RUN = TinyRun(epochs=5, checkpoint_every=1)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Train in-process on one thread, as the launches do: tiny networks gain nothing from
    more, and a thread pool spinning on a busy 2-core machine makes them crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def launcher() -> Iterator[Launcher]:
    with Launcher() as launcher:
        yield launcher


@pytest.fixture(scope="module")
def reference(tmp_path_factory, launcher) -> Reference:
    """The run never stopped, forked like the random kills so that their timings match."""
    fast = replace(RUN, launcher=launcher)
    return reference_run(fast, tmp_path_factory.mktemp("reference") / "run")


# Exact resume


class SimulatedCrash(Exception):
    """Stands for a kill: training stops with nothing saved."""


def recording_steps(records: list, crash_at: int | None = None):
    """train_step that records each step's data, z and global-RNG draws, and may crash."""

    def step(discriminator, generator, d_optimizer, g_optimizer, real_images, z, **options):
        if len(records) + 1 == crash_at:
            raise SimulatedCrash
        # Drawing from the global RNGs shows that a resume restores them.
        draws = (random.random(), float(np.random.random()), torch.rand(1).item())
        batch = hashlib.sha256(real_images.numpy().tobytes()).hexdigest()
        records.append((batch, z.clone(), draws))
        return train_step(
            discriminator, generator, d_optimizer, g_optimizer, real_images, z, **options
        )

    return step


def test_a_crash_mid_epoch_then_resume_is_bitwise_the_uninterrupted_run(tmp_path, monkeypatch):
    faces = load_faces("synthetic", 16, n_images=96, progress=False)
    settings = dict(image_size=16, epochs=2, batch_size=16, z_size=8, conv_dim=4, n_samples=4)
    settings |= dict(log_every=2, checkpoint_every=3)

    straight_steps: list = []
    monkeypatch.setattr(trainer_module, "train_step", recording_steps(straight_steps))
    straight = Trainer(TrainConfig(**settings, out=str(tmp_path / "straight")), faces)
    straight.fit(progress=False)

    # 6 steps an epoch: the crash comes at step 10, after the mid-epoch checkpoint of step 9.
    crashed_steps: list = []
    monkeypatch.setattr(trainer_module, "train_step", recording_steps(crashed_steps, crash_at=10))
    with pytest.raises(SimulatedCrash):
        Trainer(TrainConfig(**settings, out=str(tmp_path / "split")), faces).fit(progress=False)
    resumed_steps: list = []
    monkeypatch.setattr(trainer_module, "train_step", recording_steps(resumed_steps))
    resumed = Trainer(TrainConfig(**settings, out=str(tmp_path / "split")), faces)
    resumed.resume()
    assert (resumed.epoch, resumed.batch_in_epoch, resumed.step) == (1, 3, 9)
    resumed.fit(progress=False)

    # Data order, z and the global RNGs, step by step.
    assert len(crashed_steps) == 9
    assert not differences(crashed_steps + resumed_steps, straight_steps)
    assert without_timing(resumed.history) == without_timing(straight.history)
    # Networks, optimizers, fixed z, RNG states, history.jsonl and sample grids, bitwise.
    assert run_differences(tmp_path / "straight", tmp_path / "split") == []


def test_sigkill_after_a_checkpoint_then_resume_is_bitwise_the_uninterrupted_run(
    reference, tmp_path
):
    run_dir = tmp_path / "run"
    process = RUN.start(run_dir)
    step = 0
    while step < 6:  # half-way through epoch 2
        assert wait_for_new_checkpoint(process, run_dir, timeout=120), "the run ended early"
        step = load_checkpoint(checkpoint_of(run_dir))["step"]
    assert "Traceback" not in sigkill(process)
    assert process.returncode == -signal.SIGKILL
    assert load_checkpoint(checkpoint_of(run_dir))["step"] >= 6

    code, _, err = RUN.finish(run_dir)
    assert code == 0, err
    # The real program, killed and resumed, ends where the forked reference run did.
    assert run_differences(reference.run_dir, run_dir) == []


def test_sigkill_at_20_random_moments_loses_no_checkpoint_and_resumes_exactly(
    reference, launcher, tmp_path
):
    fast = replace(RUN, launcher=launcher)
    report = kill_at_random_moments(fast, reference, tmp_path, kills=20, seed=2026)
    assert report.kills == 20
    assert report.files_lost == 0
    assert report.checkpoints_intact >= 10  # the rest were killed before a fresh run's first save
    assert report.most_steps_lost <= RUN.checkpoint_every
    assert report.tracebacks == 0
    assert report.runs_matching == report.runs_finished >= 1, report.mismatches


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_save_a_checkpoint_and_exit_0(tmp_path, stop_signal):
    run_dir = tmp_path / "run"
    process = TinyRun(epochs=100).start(run_dir)
    assert wait_for_new_checkpoint(process, run_dir, timeout=120)
    process.send_signal(stop_signal)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0
    assert "Traceback" not in err
    stopped = re.search(rf"Stopped by {stop_signal.name} at step (\d+): saved", out)
    assert stopped and "--resume" in out
    assert load_checkpoint(checkpoint_of(run_dir))["step"] == int(stopped[1])


# Bad input


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[case.name for case in BAD_INPUTS])
def test_bad_input_is_refused_with_exit_2_and_touches_no_file(tmp_path, case):
    if not case.applies:
        pytest.skip("cannot arise on this machine")
    assert refuse(case, tmp_path, invoke_in_process).problems == []


def test_the_real_program_refuses_bad_input_the_same_way(tmp_path):
    case = next(case for case in BAD_INPUTS if case.name == "checkpoint that runs code")
    assert refuse(case, tmp_path, invoke_program).problems == []


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_a_checkpoint_that_runs_code_is_refused_and_the_code_never_runs(tmp_path, legacy):
    marker = tmp_path / "payload-ran"
    path = write_malicious_checkpoint(tmp_path / "evil.pt", marker, legacy)
    for load in (load_checkpoint, generator_from_checkpoint):
        with pytest.raises(CheckpointError, match="could not be read.*unsafe"):
            load(path)
    code, err = invoke_in_process(sample_args(tmp_path, path))
    assert code == 2 and "could not be read" in err
    assert not marker.exists()

    # The control: an unsafe load of the same file does run the payload.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_unreadable_images_are_skipped_with_one_warning_through_the_cli(tmp_path):
    folder = tmp_path / "faces"
    for i in range(16):
        write(folder / f"good{i:02d}.png", encoded(Image.new("RGB", (20, 20), (9 * i, 50, 80))))
    for name, content in unreadable_images().items():
        write(folder / name, content)
    before = snapshot(folder)
    code, err = invoke_program(train_args(tmp_path, "--data", str(folder)))
    assert code == 0, err
    assert err.count("skipped 4 unreadable image(s)") == 1 and "Traceback" not in err
    assert touched_files(before, snapshot(folder)) == []


def test_a_zip_with_path_traversal_names_is_only_read(tmp_path):
    colours = {"../evil.png": (200, 0, 0), "/abs.png": (0, 200, 0), "faces/ok.png": (0, 0, 200)}
    members = {name: encoded(Image.new("RGB", (8, 8), c)) for name, c in colours.items()}
    zip_path = make_zip(tmp_path / "src" / "faces.zip", members)
    before = snapshot(tmp_path)
    faces = load_faces(zip_path, 16, progress=False)  # the cache is outside tmp_path
    assert len(faces) == 3 and faces.skipped == []
    assert touched_files(before, snapshot(tmp_path)) == []
    assert not Path("/abs.png").exists()
