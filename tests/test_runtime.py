"""What the machine decides: device, precision, memory format, threads, and the CPU itself."""

import os
from pathlib import Path

import pytest
import torch

from facegan.errors import ConfigError
from facegan.runtime import (
    CHANNELS_LAST_AUTO,
    cpu_info,
    resolve_channels_last,
    resolve_device,
    resolve_precision,
    resolve_threads,
)

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


def test_auto_precision_is_fp32_on_the_cpu():
    assert resolve_precision("auto", torch.device("cpu")) is None
    assert resolve_precision("bf16", torch.device("cpu")) is torch.bfloat16


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
