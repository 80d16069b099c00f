"""Training across processes with torchrun: the process group, the DDP wrappers, rank 0's turn.

`torchrun --nproc-per-node N -m facegan train ...` starts N copies of the trainer, on one node
or many. Each joins one process group (NCCL for CUDA tensors, gloo for CPU ones), trains on its
share of every global batch, and DistributedDataParallel averages the gradients, so that every
rank holds the same networks after every step. Rank 0 alone logs, draws the sample grids,
evaluates and writes checkpoints; the others wait for it at a barrier.

A plain `python -m facegan train` has no launcher: its World is rank 0 of one, with no process
group, no wrapper and no collective, so it trains exactly as it always did.
"""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from facegan.errors import CheckpointError, ConfigError, FaceGanError
from facegan.runtime import Placement, process_placement

# How long the other ranks wait while rank 0 works alone: an evaluation of 10,000 faces with
# the face-embedding measures takes over ten minutes on a CPU. Every other wait (joining, and
# each step's collectives, where ranks arrive within a step of each other) uses dist_timeout.
MAIN_WORK_TIMEOUT = timedelta(hours=4)


class DistributedError(FaceGanError):
    """The processes of a distributed run could not reach each other."""


@dataclass(frozen=True)
class World:
    """This process's place in the run, and the collectives the trainer needs.

    Without a launcher (placement.launched False) every method is what one process alone
    would do, and none of them communicates.
    """

    placement: Placement
    device: torch.device
    sync_bn: bool = False
    waiting: dist.ProcessGroup | None = None  # gloo, with MAIN_WORK_TIMEOUT

    @property
    def rank(self) -> int:
        return self.placement.rank

    @property
    def size(self) -> int:
        return self.placement.world_size

    @property
    def is_main(self) -> bool:
        return self.placement.is_main

    @property
    def active(self) -> bool:
        """Whether a process group is in use (torchrun started this process)."""
        return self.placement.launched

    def check_batch_size(self, batch_size: int) -> None:
        """Refuse a global batch that the ranks cannot share equally."""
        if batch_size % self.size:
            raise ConfigError(
                f"--batch-size is the global batch, shared by {self.size} processes, but "
                f"{batch_size} does not divide by {self.size}: choose a multiple of {self.size}."
            )

    def share(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of a global batch (dimension 0).

        Rank r takes the r-th block, so the ranks together see exactly the global batch that
        one process would, in the same order.
        """
        if not self.active:
            return batch
        size = batch.shape[0] // self.size
        return batch[self.rank * size : (self.rank + 1) * size]

    def seed_rank(self, seed: int) -> None:
        """Give ranks other than 0 global RNG streams of their own, keyed by (seed, rank).

        The networks are built before this, from the shared seed. Random draws inside a step
        (the gradient penalty's mixing weights) then differ between ranks, as they would
        between the halves of one batch; rank 0 keeps the stream of a plain run.
        """
        if self.rank == 0:
            return
        digest = hashlib.sha256(f"facegan rank seed {seed} {self.rank}".encode()).digest()
        rank_seed = int.from_bytes(digest[:8], "little")
        random.seed(rank_seed)
        np.random.seed(rank_seed % 2**32)
        torch.manual_seed(rank_seed)

    def wrap(self, module: nn.Module) -> nn.Module:
        """module under DistributedDataParallel; module itself without a process group.

        module may be compiled already: compile the inner module, then wrap it. The default
        options suffice for the GAN step: D frozen for G's step takes no gradients, so none of
        its gradient hooks fire and find_unused_parameters is not needed. Sampling and
        evaluation on rank 0 alone must use the plain module: a forward through the wrapper
        takes part in collectives that the other ranks never join.
        """
        if not self.active:
            return module
        # DDP's first broadcast runs on the main group, whose waits last dist_timeout; the
        # ranks' own set-up before it (decoding the data on first use) may take much longer.
        self.barrier()
        if self.sync_bn:
            # In place: SyncBatchNorm takes over the same weights and buffers.
            nn.SyncBatchNorm.convert_sync_batchnorm(module)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def mean(self, stats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each statistic averaged over the ranks: the global batch's mean of per-rank means.

        One collective, left on the device: no host sync.
        """
        if not self.active:
            return stats
        values = torch.stack([value.float() for value in stats.values()])
        dist.all_reduce(values)
        return dict(zip(stats, (values / self.size).unbind(), strict=True))

    def sync_buffers(self, *modules: nn.Module) -> None:
        """Copy rank 0's floating-point buffers (BatchNorm's running statistics) to every rank.

        BatchNorm updates its running statistics from each rank's own share. DDP broadcasts
        rank 0's at the start of the next forward; doing so at the end of a step as well keeps
        the EMA of G, and every rank's whole state, equal to rank 0's.
        """
        if not self.active:
            return
        buffers = [b for m in modules for b in m.buffers() if b.is_floating_point()]
        if not buffers:
            return
        flat = torch.cat([buffer.reshape(-1) for buffer in buffers])
        dist.broadcast(flat, src=0)
        for buffer, value in zip(buffers, flat.split([b.numel() for b in buffers]), strict=True):
            buffer.copy_(value.view_as(buffer))

    def any(self, flag: object) -> bool:
        """Whether flag is truthy on any rank; every rank gets the same answer.

        A stop signal can reach the ranks at different steps: they must still stop together.
        """
        if not self.active:
            return bool(flag)
        value = torch.tensor([int(bool(flag))])
        dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self.waiting)
        return bool(value.item())

    def gather(self, obj: object) -> list[object] | None:
        """Every rank's obj, in rank order, on rank 0 (None on the others)."""
        if not self.active:
            return [obj]
        gathered = [None] * self.size if self.is_main else None
        dist.gather_object(obj, gathered, dst=0, group=self.waiting)
        return gathered

    def barrier(self) -> None:
        """Wait until every rank is here, for as long as rank 0's work may take."""
        if self.active:
            dist.barrier(group=self.waiting)

    def check_resume(self, state: dict, path: object) -> None:
        """Refuse a checkpoint written by another number of processes.

        Each rank's share of a batch, its BatchNorm statistics and its random streams follow
        from the world size: a different one would train a different run from here.
        """
        saved = state.get("world_size", 1)
        if saved != self.size:
            raise CheckpointError(
                f"cannot resume {path}: it was trained by {saved} process(es), and this run "
                f"has {self.size}. Resume with the same number of processes in all "
                f"(torchrun --nnodes times --nproc-per-node = {saved}), or start a new --out."
            )

    def own_rng_state(self, state: dict) -> dict:
        """This rank's global RNG states in a checkpoint (rank 0's are under "rng")."""
        return state["rank_rngs"][self.rank] if "rank_rngs" in state else state["rng"]


def join(device: torch.device, *, timeout_s: int, sync_bn: bool = False) -> World:
    """This process's World: with torchrun, after joining the process group on device.

    Every rank must call this. On CUDA each process takes the GPU of its LOCAL_RANK. A rank
    that cannot reach the others within timeout_s seconds raises DistributedError.
    """
    if sync_bn and device.type != "cuda":
        raise ConfigError(
            "--sync-bn needs CUDA: SyncBatchNorm does not run on the CPU. Drop it; BatchNorm "
            "then normalises each process's share of the batch on its own."
        )
    placement = process_placement()
    if not placement.launched:
        return World(placement, device)
    if device.type not in ("cuda", "cpu"):
        raise ConfigError(
            f"distributed training runs on CUDA GPUs (NCCL) or the CPU (gloo), not on "
            f"{device.type}: use --device cuda or --device cpu under torchrun."
        )
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise ConfigError(
            f"RANK is set but {' and '.join(missing)} is not: start the processes with "
            "torchrun, which sets them (see docs/distributed.md)."
        )
    if device.type == "cuda":
        device = torch.device("cuda", placement.local_rank)
        torch.cuda.set_device(device)
    timeout = timedelta(seconds=timeout_s)
    try:
        if not dist.is_initialized():
            # CUDA tensors go through NCCL; CPU ones (stop flags, random states) through gloo.
            backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(
                backend, timeout=timeout, rank=placement.rank, world_size=placement.world_size
            )
        waiting = dist.new_group(backend="gloo", timeout=MAIN_WORK_TIMEOUT)
    except (RuntimeError, ValueError) as err:  # torch's store and backend errors
        raise DistributedError(
            f"process {placement.rank} of {placement.world_size} could not reach the others "
            f"through {os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} within "
            f"{timeout_s} s ({type(err).__name__}). Start every process (torchrun on every node, "
            "with the same --nnodes and --rdzv-endpoint), open that port and the processes' "
            "own ports between the nodes, or raise --dist-timeout."
        ) from err
    return World(placement, device, sync_bn, waiting)


def leave() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
