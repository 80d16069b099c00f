"""What the machine decides for a run: device, precision, memory format, CPU threads, compiler.

Settings say what the user asked for, by names TrainConfig has validated; the functions here
turn them into what this machine does with them. This is also where the process's rank and
world size belong once training spans several processes.
"""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from facegan.errors import ConfigError

# What channels_last "auto" means on each kind of device: the memory format that trained faster
# there in benchmarks/throughput.py. On a 2-core AVX2 CPU (oneDNN, one thread) NHWC trained
# 32 px faster (116 against 105 images/s) and 64 px no slower. On CUDA it is not measured yet
# (transposed convolutions have shape-dependent NHWC paths), so auto keeps torch's NCHW there,
# as on every device not listed.
CHANNELS_LAST_AUTO = {"cpu": True}
COMPILERS = ("g++", "c++", "clang++")  # torch.compile builds C++ kernels with one on the CPU


def resolve_device(name: str) -> torch.device:
    """The torch device: "auto" picks cuda, then mps, then cpu; others must exist here."""
    has_mps = torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device 'cuda' was asked for, but this machine has no CUDA GPU: "
            "use --device auto or --device cpu."
        )
    if name == "mps" and not has_mps:
        raise ConfigError(
            "device 'mps' was asked for, but this machine has no Apple GPU: "
            "use --device auto or --device cpu."
        )
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32. "auto" is bf16 on a CUDA GPU that has it."""
    if name == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else None
    return torch.bfloat16 if name == "bf16" else None


def resolve_channels_last(name: str, device: torch.device) -> bool:
    """Whether the networks and batches use channels_last (NHWC) memory on this device.

    "auto" is the format that trained faster on this kind of device (CHANNELS_LAST_AUTO).
    """
    if name == "auto":
        return CHANNELS_LAST_AUTO.get(device.type, False)
    return name == "on"


def resolve_threads(threads: int) -> int:
    """torch's CPU threads for a run: `threads`, or for 0 (auto) torch's own count.

    torch's own count is its default for the machine, or what OMP_NUM_THREADS or the program
    (a test suite, a notebook) already chose, which auto respects; capped at the cores this
    process may use, which a container or taskset can make fewer than the machine has. The
    rule is fixed, not read from the machine's load, so that a resumed run uses the same
    count and stays bitwise. On a machine shared with other busy processes threads=1 can be
    much faster, as torch's threads wait for each other at every operation:
    benchmarks/throughput.py times both.
    """
    if threads:
        return threads
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(torch.get_num_threads(), usable or 1))


def check_compiler(device: torch.device) -> None:
    """Refuse torch.compile on the CPU up front when there is no C++ compiler to build with."""
    if device.type != "cpu":
        return
    candidates = (os.environ.get("CXX"), *COMPILERS)
    if not any(shutil.which(name) for name in candidates if name):
        raise ConfigError(
            "compile on the CPU needs a C++ compiler (g++ or clang++), and none was found: "
            "install one, set $CXX to it, or train without --compile."
        )


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's model name and feature flags (avx2, avx512_bf16, amx_bf16, ...)."""

    model: str
    flags: frozenset[str]


@cache
def cpu_info() -> CpuInfo:
    """The CPU as /proc/cpuinfo describes it; where there is none, platform's name, no flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    first: dict[str, str] = {}  # the first processor's entries: every core of a machine matches
    for line in lines:
        key, _, value = line.partition(":")
        first.setdefault(key.strip(), value.strip())
    model = first.get("model name") or platform.processor() or platform.machine() or "unknown"
    return CpuInfo(model, frozenset(first.get("flags", "").split()))
