"""Trainer: runs are written, resumed exactly, stopped safely; every option trains the same maths.

The speed options (channels_last, threads, compile, the CUDA-only settings) must change how fast
a run trains, never what it learns or what its checkpoint holds.
"""

import functools
import json
import math
import os
import shutil
import signal

import pytest
import torch
from torch import nn

import facegan.runtime as runtime
import facegan.trainer as trainer_module
from facegan.checkpoint import generator_from_checkpoint, load_checkpoint
from facegan.data import load_faces
from facegan.errors import CheckpointError, ConfigError
from facegan.history import read_history
from facegan.models import Generator, sample_images
from facegan.runlock import RunInUseError, RunLock
from facegan.step import make_optimizers
from facegan.trainer import Trainer, TrainingDiverged
from tests.support import runs
from tests.support.runs import tiny_config

faces = runs.faces  # a fixture: the tiny runs' faces, decoded once a module


@pytest.fixture(scope="module")
def few_faces():
    return load_faces("synthetic", 16, n_images=64, progress=False)


@pytest.fixture
def restore_threads():
    """Tests that change torch's thread count leave it as conftest set it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def speed_config(out, **changes):
    """The shared tiny settings, for one epoch on the CPU in fp32.

    fp32, not auto: on a CPU with bf16 instructions auto is bf16, whose rounding would hide
    a speed option that changed the maths within these tests' fp32 tolerances.
    """
    return tiny_config(out, **({"epochs": 1, "device": "cpu", "precision": "fp32"} | changes))


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "images_per_sec"} for row in history]


def parameters(module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.state_dict().values()]).clone()


def flat(module: nn.Module) -> torch.Tensor:
    return torch.cat([v.detach().float().flatten() for v in module.state_dict().values()])


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    nets = {"d": trainer.discriminator, "g": trainer.generator}
    return {
        f"{n}.{k}": v.detach().clone()
        for n, net in nets.items()
        for k, v in net.state_dict().items()
    }


def gradients(trainer: Trainer) -> dict[str, torch.Tensor]:
    nets = {"d": trainer.discriminator, "g": trainer.generator}
    return {
        f"{n}.{k}": p.grad.clone() for n, net in nets.items() for k, p in net.named_parameters()
    }


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name].float(), b[name].float(), atol=atol, rtol=1e-4)


# --- runs, resume and stopping ---------------------------------------------------------------


def test_a_run_writes_config_history_samples_and_a_safe_checkpoint(faces, tmp_path):
    history = Trainer(tiny_config(tmp_path), faces).fit(progress=False)
    assert json.loads((tmp_path / "config.json").read_text())["image_size"] == 16
    # 96 images at batch 16 is 6 steps an epoch, logged every 2 steps.
    assert [row["step"] for row in history] == [2, 4, 6, 8, 10, 12]
    assert {"d_loss", "g_loss", "d_real", "d_fake"} <= set(history[0])
    rows = (tmp_path / "history.jsonl").read_text().splitlines()
    assert [json.loads(row) for row in rows] == history
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [
        "epoch_001.png",
        "epoch_002.png",
    ]
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and state["step"] == 12


def test_resume_after_an_epoch_reproduces_the_uninterrupted_run_bitwise(faces, tmp_path):
    straight = Trainer(tiny_config(tmp_path / "straight"), faces)
    straight.fit(progress=False)

    first = Trainer(tiny_config(tmp_path / "split", epochs=1), faces)
    first.fit(progress=False)
    second = Trainer(tiny_config(tmp_path / "split"), faces)
    second.resume()
    second.fit(progress=False)

    assert torch.equal(parameters(second.generator), parameters(straight.generator))
    assert torch.equal(parameters(second.discriminator), parameters(straight.discriminator))
    strip = [{k: v for k, v in row.items() if k != "images_per_sec"} for row in straight.history]
    again = [{k: v for k, v in row.items() if k != "images_per_sec"} for row in second.history]
    assert again == strip


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_mid_epoch_saves_and_resume_matches_the_uninterrupted_run(
    faces, tmp_path, monkeypatch, capsys, stop_signal
):
    straight = Trainer(tiny_config(tmp_path / "straight"), faces)
    straight.fit(progress=False)

    real_step, calls = trainer_module.train_step, []

    def step_then_signal(*args, **kwargs):
        calls.append(1)
        if len(calls) == 9:  # step 9 is half-way through epoch 2, between log windows
            os.kill(os.getpid(), stop_signal)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "train_step", step_then_signal)
    first = Trainer(tiny_config(tmp_path / "split"), faces)
    first.fit(progress=False)
    assert f"Stopped by {stop_signal.name} at step 9" in capsys.readouterr().out
    monkeypatch.setattr(trainer_module, "train_step", real_step)

    second = Trainer(tiny_config(tmp_path / "split"), faces)
    second.resume()
    assert (second.epoch, second.batch_in_epoch, second.step) == (1, 3, 9)
    second.fit(progress=False)
    assert torch.equal(parameters(second.generator), parameters(straight.generator))
    assert torch.equal(parameters(second.discriminator), parameters(straight.discriminator))
    assert without_timing(second.history) == without_timing(straight.history)


def test_a_finished_run_is_not_overwritten_without_resume(faces, tmp_path):
    Trainer(tiny_config(tmp_path, epochs=1), faces).fit(progress=False)
    before = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run"):
        Trainer(tiny_config(tmp_path, epochs=1), faces).fit(progress=False)
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == before


def test_resume_with_another_architecture_names_what_differs(faces, tmp_path):
    Trainer(tiny_config(tmp_path, epochs=1), faces).fit(progress=False)
    with pytest.raises(CheckpointError, match="conv_dim: 4 -> 8 \\(fixed by the checkpoint\\)"):
        Trainer(tiny_config(tmp_path, conv_dim=8), faces).resume()


def test_resume_with_another_image_size_names_what_differs(faces, tmp_path):
    Trainer(tiny_config(tmp_path, epochs=1), faces).fit(progress=False)
    larger = load_faces("synthetic", 32, n_images=32, progress=False)
    with pytest.raises(CheckpointError, match="image_size: 16 -> 32 \\(fixed by the checkpoint\\)"):
        Trainer(tiny_config(tmp_path, image_size=32), larger).resume()


def test_resume_with_other_settings_stops_unless_allowed_and_then_records_them(faces, tmp_path):
    Trainer(tiny_config(tmp_path, epochs=1), faces).fit(progress=False)
    before = {name: (tmp_path / name).read_bytes() for name in ("config.json", "history.jsonl")}
    changed = tiny_config(tmp_path, epochs=2, lr=1e-3, beta1=0.3, flip=True)
    with pytest.raises(CheckpointError) as refused:
        Trainer(changed, faces).resume()
    assert str(refused.value).splitlines()[1:4] == [
        "  lr: 0.0002 -> 0.001",
        "  beta1: 0.5 -> 0.3",
        "  flip: False -> True",
    ]
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert not (tmp_path / ".lock").exists()  # a refused resume lets go of the folder

    resumed = Trainer(changed, faces)
    resumed.resume(allow_changes=True)
    for optimizer in (resumed.g_optimizer, resumed.d_optimizer):
        assert [(g["lr"], g["betas"]) for g in optimizer.param_groups] == [(1e-3, (0.3, 0.999))]
    change = {"lr": [2e-4, 1e-3], "beta1": [0.5, 0.3], "flip": [False, True]}
    assert read_history(tmp_path)[-1] == {
        "kind": "change", "epoch": 1, "step": resumed.step, "changes": change,
    }  # fmt: skip
    recorded = json.loads((tmp_path / "config.json").read_text())
    assert (recorded["lr"], recorded["epochs"], recorded["flip"]) == (1e-3, 2, True)
    resumed.fit(progress=False)
    assert [row["kind"] for row in resumed.history].count("change") == 1
    assert load_checkpoint(resumed.checkpoint_path)["config"]["lr"] == 1e-3


def test_a_new_batch_size_mid_epoch_goes_on_from_the_first_image_not_trained_on(faces, tmp_path):
    first = Trainer(tiny_config(tmp_path, epochs=1, batch_size=8), faces)
    first.fit(progress=False, max_steps=4)  # 32 images into the epoch
    larger = Trainer(tiny_config(tmp_path, epochs=1, batch_size=16), faces)
    larger.resume(allow_changes=True)
    assert (larger.epoch, larger.batch_in_epoch, larger.step) == (0, 2, 4)


def test_a_run_folder_in_use_is_refused_before_anything_is_written(faces, tmp_path):
    holder = RunLock(tmp_path)
    holder.acquire()
    try:
        refused = rf"in use by another run \(process {os.getpid()}\)"
        with pytest.raises(RunInUseError, match=refused):
            Trainer(tiny_config(tmp_path, epochs=1), faces).fit(progress=False)
        assert [path.name for path in tmp_path.iterdir()] == [".lock"]
    finally:
        holder.release()
    Trainer(tiny_config(tmp_path, epochs=1), faces).fit(progress=False)
    assert not (tmp_path / ".lock").exists()


def test_checkpoint_every_also_saves_mid_epoch(faces, tmp_path, monkeypatch):
    saved_steps = []
    monkeypatch.setattr(trainer_module, "save_atomic", lambda state, _: saved_steps.append(state))
    Trainer(tiny_config(tmp_path, checkpoint_every=4), faces).fit(progress=False)
    # 6 steps an epoch: every 4th step, and each epoch end.
    assert [(s["step"], s["epoch"], s["batch_in_epoch"]) for s in saved_steps] == [
        (4, 0, 4),
        (6, 1, 0),
        (8, 1, 2),
        (12, 2, 0),
    ]


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(
    faces, tmp_path, monkeypatch
):
    Trainer(tiny_config(tmp_path, epochs=1), faces).fit(progress=False)
    good = (tmp_path / "checkpoints" / "last.pt").read_bytes()

    def exploding_step(*args, **kwargs):
        stats = real_step(*args, **kwargs)
        return stats | {"d_loss": torch.tensor(float("nan"))}

    real_step = trainer_module.train_step
    monkeypatch.setattr(trainer_module, "train_step", exploding_step)
    trainer = Trainer(tiny_config(tmp_path), faces)
    trainer.resume()
    with pytest.raises(TrainingDiverged, match="non-finite by step 8.*left untouched"):
        trainer.fit(progress=False)
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == good


def test_sampling_uses_eval_mode_so_a_face_depends_only_on_its_own_z(faces, tmp_path):
    trainer = Trainer(tiny_config(tmp_path, epochs=1), faces)
    trainer.fit(progress=False)
    z = torch.randn(6, 8)
    alone = sample_images(trainer.generator, z[:1])
    together = sample_images(trainer.generator, z)
    torch.testing.assert_close(alone[0], together[0])
    assert trainer.generator.training

    loaded = generator_from_checkpoint(trainer.checkpoint_path)  # the EMA
    torch.testing.assert_close(sample_images(loaded, z), sample_images(trainer.ema_generator, z))


# --- recipe options: the EMA, flips, every objective --------------------------------------------


def test_an_ema_run_samples_from_the_ema_and_the_checkpoint_keeps_it(tmp_path, faces):
    trainer = Trainer(tiny_config(tmp_path / "run", ema=0.9), faces)
    trainer.fit(progress=False)
    assert trainer.ema_generator is trainer.ema.model
    assert not torch.equal(flat(trainer.generator), flat(trainer.ema.model))
    path = trainer.checkpoint_path
    averaged, live = generator_from_checkpoint(path), generator_from_checkpoint(path, False)
    assert torch.equal(flat(averaged), flat(trainer.ema.model))
    assert torch.equal(flat(live), flat(trainer.generator))
    z = trainer.fixed_z
    assert torch.equal(sample_images(averaged, z), sample_images(trainer.ema_generator, z))


def test_without_ema_the_pictures_come_from_g_itself(tmp_path, faces):
    trainer = Trainer(tiny_config(tmp_path, ema=0.0), faces)
    assert trainer.ema is None and trainer.ema_generator is trainer.generator
    loaded = generator_from_checkpoint(trainer.save_checkpoint())
    assert torch.equal(flat(loaded), flat(trainer.generator))


def test_resume_is_exact_with_every_option_on(tmp_path, faces):
    options = dict(loss="hinge", d_norm="spectral", ema=0.9, flip=True, epochs=3)
    straight = Trainer(tiny_config(tmp_path / "a", **options), faces)
    straight.fit(progress=False)

    first = Trainer(tiny_config(tmp_path / "b", **(options | {"epochs": 1})), faces)
    first.fit(progress=False)
    resumed = Trainer(tiny_config(tmp_path / "b", **options), faces)
    resumed.resume()
    resumed.fit(progress=False)
    for part in ("generator", "discriminator"):
        assert torch.equal(flat(getattr(straight, part)), flat(getattr(resumed, part))), part
    assert torch.equal(flat(straight.ema.model), flat(resumed.ema.model))


def test_resume_refuses_a_changed_d_norm_or_turning_ema_on(tmp_path, faces):
    Trainer(tiny_config(tmp_path / "run", epochs=1, ema=0.0), faces).fit(progress=False)
    for change in ({"d_norm": "spectral", "ema": 0.0}, {"ema": 0.99}):
        trainer = Trainer(tiny_config(tmp_path / "run", **change), faces)
        with pytest.raises(CheckpointError, match="cannot resume"):
            trainer.resume()


def test_flip_mirrors_about_half_of_each_batch_and_nothing_else(tmp_path, faces):
    plain = Trainer(tiny_config(tmp_path / "p"), faces)
    flipped = Trainer(tiny_config(tmp_path / "f", flip=True), faces)
    mirrored = 0
    for a, b in zip(plain._batches(), flipped._batches(), strict=True):
        same = (a == b).flatten(1).all(1)
        mirror = (a.flip(3) == b).flatten(1).all(1)
        assert bool((same | mirror).all())
        mirrored += int((mirror & ~same).sum())
    total = plain.steps_per_epoch * plain.config.batch_size
    assert 0.3 < mirrored / total < 0.7


def test_every_loss_trains_without_diverging(tmp_path, faces):
    for loss, norm in (("bce", "batch"), ("lsgan", "batch"), ("hinge", "spectral")):
        history = Trainer(tiny_config(tmp_path / loss, loss=loss, d_norm=norm), faces).fit(False)
        assert all(math.isfinite(row["d_loss"]) for row in history)
    history = Trainer(tiny_config(tmp_path / "wgan", loss="wgan-gp", d_norm="none"), faces).fit(
        progress=False
    )
    assert all(row["gradient_penalty"] >= 0 for row in history)


# --- memory format and threads in a run -------------------------------------------------------


@pytest.mark.parametrize("channels_last", ["on", "off"])
def test_channels_last_applies_to_both_networks_and_every_batch(few_faces, tmp_path, channels_last):
    trainer = Trainer(speed_config(tmp_path, channels_last=channels_last), few_faces)
    layout = torch.channels_last if channels_last == "on" else torch.contiguous_format
    for net in (trainer.discriminator, trainer.generator):
        convs = [p for p in net.parameters() if p.dim() == 4 and p.shape[-1] > 1]
        assert convs and all(p.is_contiguous(memory_format=layout) for p in convs)
    batch = next(trainer._batches())
    assert batch.is_contiguous(memory_format=layout)


def test_channels_last_trains_the_same_maths(few_faces, tmp_path):
    runs = {}
    for layout in ("on", "off"):
        trainer = Trainer(speed_config(tmp_path / layout, channels_last=layout), few_faces)
        stats = trainer.train_steps(3)
        runs[layout] = (weights(trainer), stats)
    assert_close(runs["on"][0], runs["off"][0], atol=1e-5)
    for on, off in zip(runs["on"][1], runs["off"][1], strict=True):
        assert on == pytest.approx(off, rel=1e-4, abs=1e-5)


def test_a_channels_last_checkpoint_loads_into_a_plain_generator(few_faces, tmp_path):
    trainer = Trainer(speed_config(tmp_path, channels_last="on"), few_faces)
    trainer.fit(progress=False)
    generator = generator_from_checkpoint(trainer.checkpoint_path)
    z = torch.randn(4, 8)
    with torch.no_grad():
        expected = trainer.ema_generator.eval()(z)  # the EMA, as saved
        torch.testing.assert_close(generator(z), expected, atol=1e-6, rtol=1e-5)


def test_a_run_uses_its_thread_count(few_faces, tmp_path, restore_threads):
    torch.set_num_threads(1)
    trainer = Trainer(speed_config(tmp_path, threads=2), few_faces)
    assert trainer.threads == 2
    trainer.train_steps(1)
    assert torch.get_num_threads() == 2


# --- train_steps: what the throughput benchmark times ----------------------------------------


def test_train_steps_follow_fit_exactly_and_write_nothing(few_faces, tmp_path):
    fitted = Trainer(speed_config(tmp_path / "fit", epochs=2), few_faces)
    fitted.fit(progress=False)
    stepped = Trainer(speed_config(tmp_path / "steps", epochs=2), few_faces)
    stats = stepped.train_steps(2 * stepped.steps_per_epoch)  # rolls over into epoch 2
    assert not (tmp_path / "steps").exists()
    assert (stepped.step, stepped.epoch, stepped.batch_in_epoch) == (fitted.step, 2, 0)
    for name, value in weights(fitted).items():
        assert torch.equal(value, weights(stepped)[name]), name
    logged = [row for row in fitted.history if row["kind"] == "train"]
    first_window = {k: sum(s[k] for s in stats[:2]) / 2 for k in stats[0]}
    assert first_window == pytest.approx({k: logged[0][k] for k in stats[0]}, rel=1e-6)


def test_train_steps_wants_a_positive_count(few_faces, tmp_path):
    with pytest.raises(ConfigError, match="count"):
        Trainer(speed_config(tmp_path), few_faces).train_steps(0)


# --- CUDA-only settings stay off the CPU -----------------------------------------------------


def test_the_cpu_path_requests_no_fused_adam_and_no_cudnn_search(few_faces, tmp_path):
    torch.backends.cudnn.benchmark = False
    trainer = Trainer(speed_config(tmp_path), few_faces)
    for optimizer in (trainer.d_optimizer, trainer.g_optimizer):
        assert optimizer.defaults["fused"] is None
    assert torch.backends.cudnn.benchmark is False
    # What a CUDA Trainer asks for (this torch can build it on the CPU too).
    d_optimizer, _ = make_optimizers(trainer.discriminator, trainer.generator, fused=True)
    assert d_optimizer.defaults["fused"] is True


# --- torch.compile -----------------------------------------------------------------------------


def compiled_and_eager(few_faces, tmp_path, steps: int) -> tuple[Trainer, Trainer]:
    eager = Trainer(speed_config(tmp_path / "eager"), few_faces)
    compiled = Trainer(speed_config(tmp_path / "compiled", compile=True), few_faces)
    assert compiled.g_forward is not compiled.generator  # the step really runs the wrapper
    for trainer in (eager, compiled):
        trainer.train_steps(steps)
    return eager, compiled


def test_compiled_steps_compute_the_eager_gradients(few_faces, tmp_path, monkeypatch):
    """Dynamo and AOTAutograd (aot_eager: no C++ build, so it is fast) around the real step.

    This is where double use of D (on fake.detach(), then on fake) and buffer donation would
    go wrong; inductor's kernels are tested below.
    """
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    eager, compiled = compiled_and_eager(few_faces, tmp_path, steps=2)
    # After a step, D holds the gradients of its own step plus those of G's step through it.
    assert_close(gradients(compiled), gradients(eager), atol=1e-6)
    assert_close(weights(compiled), weights(eager), atol=1e-6)


def test_a_compiled_run_saves_plain_checkpoints_and_resumes(few_faces, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    config = speed_config(tmp_path, compile=True, epochs=2)
    trainer = Trainer(config, few_faces)
    trainer.fit(progress=False)
    state = load_checkpoint(trainer.checkpoint_path)
    for name in ("generator", "discriminator"):
        assert not any("_orig_mod" in key for key in state[name])
    assert state["generator"].keys() == Generator(8, 4, 16).state_dict().keys()
    generator_from_checkpoint(trainer.checkpoint_path)  # loads into a plain Generator
    resumed = Trainer(speed_config(tmp_path, compile=True, epochs=3), few_faces)
    resumed.resume()
    resumed.fit(progress=False)
    assert resumed.epoch == 3


@pytest.mark.skipif(
    not any(shutil.which(name) for name in runtime.COMPILERS),
    reason="torch.compile's inductor needs a C++ compiler on the CPU, and none is installed",
)
def test_inductor_compiled_steps_match_eager(few_faces, tmp_path):
    eager, compiled = compiled_and_eager(few_faces, tmp_path, steps=2)
    assert_close(gradients(compiled), gradients(eager), atol=1e-5)
    assert_close(weights(compiled), weights(eager), atol=1e-5)


def test_compile_without_a_cpu_compiler_is_refused_clearly(few_faces, tmp_path, monkeypatch):
    monkeypatch.setattr(runtime.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="needs a C\\+\\+ compiler"):
        Trainer(speed_config(tmp_path, compile=True), few_faces)
