"""What the machine decides: device, precision, memory format, threads, and the CPU itself."""

import json
import os
from pathlib import Path

import pytest
import torch

from facegan.checkpoint import load_checkpoint
from facegan.config import TrainConfig
from facegan.data import load_faces
from facegan.errors import ConfigError
from facegan.runtime import (
    CHANNELS_LAST_AUTO,
    cpu_info,
    native_bf16,
    precision_name,
    resolve_channels_last,
    resolve_device,
    resolve_precision,
    resolve_threads,
    resumed_precision,
)
from facegan.trainer import Trainer
from tests.support.runs import tiny_config

CPU = torch.device("cpu")


@pytest.fixture
def restore_threads():
    """Tests that change torch's thread count leave it as conftest set it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_without_a_gpu_says_what_to_do():
    with pytest.raises(ConfigError, match="no CUDA GPU: use --device auto"):
        resolve_device("cuda")


def cpu_with(monkeypatch, *, avx512_bf16: bool, amx_tile: bool = False) -> None:
    """Make torch's CPU checks answer as a CPU with (or without) bf16 instructions would."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx_tile)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)


@pytest.mark.parametrize(
    ("avx512_bf16", "amx_tile", "expected"),
    [(True, False, torch.bfloat16), (False, True, torch.bfloat16), (False, False, None)],
)
def test_auto_precision_is_bf16_on_a_cpu_with_bf16_instructions_and_fp32_elsewhere(
    monkeypatch, avx512_bf16, amx_tile, expected
):
    cpu_with(monkeypatch, avx512_bf16=avx512_bf16, amx_tile=amx_tile)
    assert resolve_precision("auto", CPU) is expected
    assert resolve_precision("bf16", CPU) is torch.bfloat16
    assert resolve_precision("fp32", CPU) is None


def test_auto_precision_follows_torchs_own_check_on_this_machine():
    instructions = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    native = instructions and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert native_bf16(CPU) is native
    assert precision_name(resolve_precision("auto", CPU)) == ("bf16" if native else "fp32")


def test_a_resume_keeps_the_recorded_precision_whatever_auto_would_choose(monkeypatch):
    cpu_with(monkeypatch, avx512_bf16=True)
    assert resumed_precision("fp32", "auto", CPU) == (None, None)
    # Runs from before the resolved precision was recorded wrote "auto", which was fp32 here.
    assert resumed_precision("auto", "auto", CPU) == (None, None)
    cpu_with(monkeypatch, avx512_bf16=False)
    dtype, note = resumed_precision("bf16", "auto", CPU)
    assert dtype is torch.bfloat16
    assert "without bf16 instructions" in note and "--precision fp32" in note


def test_a_resume_in_another_precision_says_it_leaves_the_exact_path():
    dtype, note = resumed_precision("bf16", "fp32", CPU)
    assert dtype is None
    assert "the run so far trained in bf16" in note and "bit for bit" in note


def bf16_run(out, **changes) -> TrainConfig:
    return tiny_config(out, **({"device": "cpu", "precision": "bf16"} | changes))


def weights(trainer: Trainer) -> torch.Tensor:
    nets = (trainer.generator, trainer.discriminator)
    return torch.cat([v.detach().float().flatten() for n in nets for v in n.state_dict().values()])


def test_a_bf16_run_on_the_cpu_resumes_bitwise_and_records_its_precision(tmp_path):
    faces = load_faces("synthetic", 16, n_images=64, progress=False)
    straight = Trainer(bf16_run(tmp_path / "straight"), faces)
    straight.fit(progress=False)

    first = Trainer(bf16_run(tmp_path / "split"), faces)
    first.fit(progress=False, max_steps=5)  # mid-epoch, between logging windows
    # Resumed with auto: the recorded bf16 is kept, whatever this CPU would choose.
    second = Trainer(bf16_run(tmp_path / "split", precision="auto"), faces)
    second.resume()
    assert second.amp_dtype is torch.bfloat16
    second.fit(progress=False)

    assert torch.equal(weights(second), weights(straight))
    unbroken = [{k: v for k, v in row.items() if k != "images_per_sec"} for row in straight.history]
    again = [{k: v for k, v in row.items() if k != "images_per_sec"} for row in second.history]
    assert again == unbroken
    assert json.loads((tmp_path / "split" / "config.json").read_text())["precision"] == "bf16"
    state = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert state["config"]["precision"] == "bf16"


def test_auto_is_recorded_as_what_it_chose(tmp_path):
    faces = load_faces("synthetic", 16, n_images=32, progress=False)
    trainer = Trainer(tiny_config(tmp_path, device="cpu", epochs=1), faces)
    trainer.fit(progress=False)
    recorded = json.loads((tmp_path / "config.json").read_text())["precision"]
    assert recorded == precision_name(resolve_precision("auto", CPU))


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


def test_cpu_info_reads_the_model_name_and_flags_of_the_first_processor():
    info = cpu_info()
    assert info.model and isinstance(info.flags, frozenset)
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo on this system")
    lines = cpuinfo.read_text().splitlines()
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    flags = [line.split(":", 1)[1].split() for line in lines if line.startswith("flags")]
    if models:
        assert info.model == models[0]
    if flags:
        assert info.flags == frozenset(flags[0])
