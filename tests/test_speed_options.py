"""Speed options: channels_last, threads, compile and the CUDA-only settings.

Each option must change how fast a run trains, never what it learns or what its checkpoint
holds. The CUDA-only settings (fused Adam, cuDNN benchmark) are checked to stay off the CPU.
"""

import functools
import os
import shutil

import pytest
import torch
from tiny import tiny_config as shared_tiny_config

import facegan.train as train
from facegan.__main__ import main
from facegan.data import load_faces
from facegan.errors import ConfigError
from facegan.models import Generator
from facegan.train import (
    CHANNELS_LAST_AUTO,
    TrainConfig,
    Trainer,
    generator_from_checkpoint,
    load_checkpoint,
    make_optimizers,
    resolve_channels_last,
    resolve_threads,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def faces():
    return load_faces("synthetic", 16, n_images=64, progress=False)


@pytest.fixture
def restore_threads():
    """Tests that change torch's thread count leave it as conftest set it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def tiny_config(out, **changes) -> TrainConfig:
    """The shared tiny settings, for one epoch on the CPU."""
    return shared_tiny_config(out, **({"epochs": 1, "device": "cpu"} | changes))


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


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"channels_last": "yes"}, "channels_last 'yes' is unknown"),
        ({"threads": -1}, "threads must be 0 \\(auto\\) or a positive number"),
        ({"threads": True}, "threads must be 0"),
        ({"compile": True, "loss": "wgan-gp", "d_norm": "none"}, "does not differentiate twice"),
    ],
)
def test_bad_speed_settings_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes).validate()


def test_the_flags_reach_the_config_and_bad_values_exit_2(tmp_path, capsys):
    assert main(["train", "--channels-last", "sideways", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "channels_last 'sideways' is unknown" in err and "Traceback" not in err
    assert main(["train", "--threads", "-2", "--out", str(tmp_path)]) == 2
    assert "threads must be 0 (auto)" in capsys.readouterr().err


def test_channels_last_auto_follows_the_measured_table():
    assert resolve_channels_last("auto", CPU) is CHANNELS_LAST_AUTO["cpu"]
    # Not measured on a GPU yet: auto keeps torch's NCHW there.
    assert resolve_channels_last("auto", torch.device("cuda")) is False
    assert resolve_channels_last("on", torch.device("cuda")) is True
    assert resolve_channels_last("off", CPU) is False


def test_auto_threads_keep_what_the_program_chose_and_never_exceed_the_cores(restore_threads):
    assert resolve_threads(3) == 3
    torch.set_num_threads(1)  # as a test suite, or OMP_NUM_THREADS=1, would
    assert resolve_threads(0) == 1
    torch.set_num_threads(64)
    assert resolve_threads(0) == min(64, len(os.sched_getaffinity(0)))


# --- memory format and threads in a run -------------------------------------------------------


@pytest.mark.parametrize("channels_last", ["on", "off"])
def test_channels_last_applies_to_both_networks_and_every_batch(faces, tmp_path, channels_last):
    trainer = Trainer(tiny_config(tmp_path, channels_last=channels_last), faces)
    layout = torch.channels_last if channels_last == "on" else torch.contiguous_format
    for net in (trainer.discriminator, trainer.generator):
        convs = [p for p in net.parameters() if p.dim() == 4 and p.shape[-1] > 1]
        assert convs and all(p.is_contiguous(memory_format=layout) for p in convs)
    batch = next(trainer._batches())
    assert batch.is_contiguous(memory_format=layout)


def test_channels_last_trains_the_same_maths(faces, tmp_path):
    runs = {}
    for layout in ("on", "off"):
        trainer = Trainer(tiny_config(tmp_path / layout, channels_last=layout), faces)
        stats = trainer.train_steps(3)
        runs[layout] = (weights(trainer), stats)
    assert_close(runs["on"][0], runs["off"][0], atol=1e-5)
    for on, off in zip(runs["on"][1], runs["off"][1], strict=True):
        assert on == pytest.approx(off, rel=1e-4, abs=1e-5)


def test_a_channels_last_checkpoint_loads_into_a_plain_generator(faces, tmp_path):
    trainer = Trainer(tiny_config(tmp_path, channels_last="on"), faces)
    trainer.fit(progress=False)
    generator = generator_from_checkpoint(trainer.checkpoint_path)
    z = torch.randn(4, 8)
    with torch.no_grad():
        expected = trainer.sampling_generator.eval()(z)  # the weight average, as saved
        torch.testing.assert_close(generator(z), expected, atol=1e-6, rtol=1e-5)


def test_a_run_uses_its_thread_count(faces, tmp_path, restore_threads):
    torch.set_num_threads(1)
    trainer = Trainer(tiny_config(tmp_path, threads=2), faces)
    assert trainer.threads == 2
    trainer.train_steps(1)
    assert torch.get_num_threads() == 2


# --- train_steps: what the throughput benchmark times ----------------------------------------


def test_train_steps_follow_fit_exactly_and_write_nothing(faces, tmp_path):
    fitted = Trainer(tiny_config(tmp_path / "fit", epochs=2), faces)
    fitted.fit(progress=False)
    stepped = Trainer(tiny_config(tmp_path / "steps", epochs=2), faces)
    stats = stepped.train_steps(2 * stepped.steps_per_epoch)  # rolls over into epoch 2
    assert not (tmp_path / "steps").exists()
    assert (stepped.step, stepped.epoch, stepped.batch_in_epoch) == (fitted.step, 2, 0)
    for name, value in weights(fitted).items():
        assert torch.equal(value, weights(stepped)[name]), name
    logged = [row for row in fitted.history if row["kind"] == "train"]
    first_window = {k: sum(s[k] for s in stats[:2]) / 2 for k in stats[0]}
    assert first_window == pytest.approx({k: logged[0][k] for k in stats[0]}, rel=1e-6)


def test_train_steps_wants_a_positive_count(faces, tmp_path):
    with pytest.raises(ConfigError, match="count"):
        Trainer(tiny_config(tmp_path), faces).train_steps(0)


# --- CUDA-only settings stay off the CPU -----------------------------------------------------


def test_the_cpu_path_requests_no_fused_adam_and_no_cudnn_search(faces, tmp_path):
    torch.backends.cudnn.benchmark = False
    trainer = Trainer(tiny_config(tmp_path), faces)
    for optimizer in (trainer.d_optimizer, trainer.g_optimizer):
        assert optimizer.defaults["fused"] is None
    assert torch.backends.cudnn.benchmark is False
    # What a CUDA Trainer asks for (this torch can build it on the CPU too).
    d_optimizer, _ = make_optimizers(trainer.discriminator, trainer.generator, fused=True)
    assert d_optimizer.defaults["fused"] is True


# --- torch.compile -----------------------------------------------------------------------------


def compiled_and_eager(faces, tmp_path, steps: int) -> tuple[Trainer, Trainer]:
    eager = Trainer(tiny_config(tmp_path / "eager"), faces)
    compiled = Trainer(tiny_config(tmp_path / "compiled", compile=True), faces)
    assert compiled.g_forward is not compiled.generator  # the step really runs the wrapper
    for trainer in (eager, compiled):
        trainer.train_steps(steps)
    return eager, compiled


def test_compiled_steps_compute_the_eager_gradients(faces, tmp_path, monkeypatch):
    """Dynamo and AOTAutograd (aot_eager: no C++ build, so it is fast) around the real step.

    This is where double use of D (on fake.detach(), then on fake) and buffer donation would
    go wrong; inductor's kernels are tested below.
    """
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    eager, compiled = compiled_and_eager(faces, tmp_path, steps=2)
    # After a step, D holds the gradients of its own step plus those of G's step through it.
    assert_close(gradients(compiled), gradients(eager), atol=1e-6)
    assert_close(weights(compiled), weights(eager), atol=1e-6)


def test_a_compiled_run_saves_plain_checkpoints_and_resumes(faces, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    config = tiny_config(tmp_path, compile=True, epochs=2)
    trainer = Trainer(config, faces)
    trainer.fit(progress=False)
    state = load_checkpoint(trainer.checkpoint_path)
    for name in ("generator", "discriminator"):
        assert not any("_orig_mod" in key for key in state[name])
    assert state["generator"].keys() == Generator(8, 4, 16).state_dict().keys()
    generator_from_checkpoint(trainer.checkpoint_path)  # loads into a plain Generator
    resumed = Trainer(tiny_config(tmp_path, compile=True, epochs=3), faces)
    resumed.resume()
    resumed.fit(progress=False)
    assert resumed.epoch == 3


@pytest.mark.skipif(
    not any(shutil.which(name) for name in train.COMPILERS),
    reason="torch.compile's inductor needs a C++ compiler on the CPU, and none is installed",
)
def test_inductor_compiled_steps_match_eager(faces, tmp_path):
    eager, compiled = compiled_and_eager(faces, tmp_path, steps=2)
    assert_close(gradients(compiled), gradients(eager), atol=1e-5)
    assert_close(weights(compiled), weights(eager), atol=1e-5)


def test_compile_without_a_cpu_compiler_is_refused_clearly(faces, tmp_path, monkeypatch):
    monkeypatch.setattr(train.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="needs a C\\+\\+ compiler"):
        Trainer(tiny_config(tmp_path, compile=True), faces)
