"""What the machine decides for a run: device, precision, memory format, CPU threads, compiler.

Settings say what the user asked for, by names TrainConfig has validated; the functions here
turn them into what this machine does with them. Placement is the process's rank and world
size when training spans several processes (torchrun).
"""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Mapping
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
# torch.cpu's checks, each a CPU instruction set that computes bf16: AMX tiles or AVX512-BF16.
CPU_BF16_CHECKS = ("amx_tile", "avx512_bf16")
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


def native_bf16(device: torch.device) -> bool:
    """Whether the device computes bf16 in hardware: a CUDA GPU that has it, or a CPU with AMX
    or AVX512-BF16 instructions whose bf16 convolutions torch's oneDNN runs natively.

    Read from torch's own checks, not /proc/cpuinfo, so the answer is the one torch acts on.
    Elsewhere bf16 is emulated: on an AVX2-only CPU a step took about 15 times as long.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    checks = [getattr(torch.cpu, f"_is_{name}_supported", None) for name in CPU_BF16_CHECKS]
    instructions = any(check is not None and check() for check in checks)  # older torch: none
    return instructions and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32. "auto" is bf16 where native_bf16(device)."""
    if name == "auto":
        return torch.bfloat16 if native_bf16(device) else None
    return torch.bfloat16 if name == "bf16" else None


def precision_name(amp_dtype: torch.dtype | None) -> str:
    """The precision setting that a resolved autocast dtype stands for: "bf16" or "fp32"."""
    return "bf16" if amp_dtype == torch.bfloat16 else "fp32"


def legacy_auto_precision(device: torch.device) -> str:
    """What "auto" meant before it read the CPU: bf16 on a CUDA GPU that has it, else fp32.

    Runs recorded "auto" itself until the resolved precision was recorded; their resume keeps it.
    """
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def resumed_precision(
    recorded: str, asked: str, device: torch.device
) -> tuple[torch.dtype | None, str | None]:
    """The autocast dtype a resumed run trains with, and a line to print about it, if any.

    recorded is the checkpoint's precision ("auto" in runs from before it was resolved);
    asked is this run's setting. Auto keeps the recorded precision, so the resumed run stays
    bitwise the unbroken one, even on a device that has to emulate bf16.
    """
    if recorded == "auto":
        recorded = legacy_auto_precision(device)
    if asked not in ("auto", recorded):
        note = (
            f"Resuming in {asked}, as asked; the run so far trained in {recorded}, so it will "
            "not match an unbroken run bit for bit."
        )
        return resolve_precision(asked, device), note
    note = None
    if recorded == "bf16" and not native_bf16(device):
        note = (
            f"Resuming in bf16, as the run recorded, on a {device.type} without bf16 "
            "instructions: steps will be many times slower. Resume with --precision fp32 to "
            "train fast instead, at the cost of an exact resume."
        )
    return resolve_precision(recorded, device), note


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


@dataclass(frozen=True)
class Placement:
    """Where this process stands among those a launcher (torchrun) started.

    launched is False for a plain `python -m facegan train`: then rank 0 of a world of one,
    with no process group.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    launched: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, draws samples, evaluates and writes checkpoints."""
        return self.rank == 0


def process_placement(environ: Mapping[str, str] = os.environ) -> Placement:
    """This process's rank, local rank and world size, from torchrun's RANK, LOCAL_RANK and
    WORLD_SIZE; without RANK, a plain process: rank 0 of one."""
    if "RANK" not in environ:
        return Placement()
    try:
        rank, world_size = int(environ["RANK"]), int(environ.get("WORLD_SIZE", ""))
        local_rank = int(environ.get("LOCAL_RANK", rank))
    except ValueError as err:
        raise ConfigError(
            "RANK is set, so this process was launched for distributed training, but RANK, "
            "LOCAL_RANK and WORLD_SIZE are not all whole numbers: start it with torchrun "
            "(see docs/distributed.md), or unset RANK for a plain run."
        ) from err
    if not 0 <= rank < world_size:
        raise ConfigError(
            f"RANK {rank} does not fit WORLD_SIZE {world_size}: start the processes with "
            "torchrun, which numbers them 0 to WORLD_SIZE - 1."
        )
    return Placement(rank, local_rank, world_size, launched=True)


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
