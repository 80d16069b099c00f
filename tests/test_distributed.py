"""Training across processes: real torchrun, gloo on the CPU, tiny networks.

Runs launch `python -m torch.distributed.run` with two processes, either on the CLI
(`-m facegan train`) or on this file, whose worker (run as a script) trains like the CLI and
then saves each rank's whole state, so that the ranks can be compared with each other.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import fields
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from facegan.checkpoint import load_checkpoint
from facegan.config import TrainConfig
from facegan.distributed import DistributedError, World, join, leave
from facegan.errors import CheckpointError, ConfigError
from facegan.runtime import Placement, process_placement
from facegan.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]

# 64 images in global batches of 16: 4 steps an epoch, 8 images per rank and step. A
# checkpoint at every step, so that a killed run always has a recent one.
EPOCHS = 20
TINY = [
    *("--image-size", "16", "--n-images", "64", "--batch-size", "16", "--z-size", "8"),
    *("--conv-dim", "4", "--n-samples", "4", "--log-every", "1", "--precision", "fp32"),
    *("--device", "cpu", "--epochs", str(EPOCHS), "--checkpoint-every", "1", "--no-progress"),
]
STEPS = EPOCHS * 4
# Entries every rank must hold bitwise alike. The global RNG states differ by design (each rank
# has its own stream), and so may the history: only rank 0 records evaluations.
SHARED = (
    "generator",
    "ema_generator",
    "discriminator",
    "g_optimizer",
    "d_optimizer",
    "fixed_z",
    "z_rng",
    "epoch",
    "batch_in_epoch",
    "step",
    "window",
)
# What a resumed run must reproduce bitwise: the state all ranks share, rank 0's RNG states
# and every other rank's, and the history (bar its one wall-clock field).
RESUMED = (*SHARED, "rng", "rank_rngs", "world_size")


def tiny_config(run_dir: Path, **changes: object) -> TrainConfig:
    """TINY as a TrainConfig, for trainers in this process."""
    settings = {
        **dict(image_size=16, n_images=64, batch_size=16, z_size=8, conv_dim=4, n_samples=4),
        **dict(log_every=1, precision="fp32", device="cpu", epochs=EPOCHS, checkpoint_every=1),
    }
    return TrainConfig(**settings | changes, out=str(run_dir))


def assert_resumed_bitwise(resumed: dict, reference: dict) -> None:
    for key in RESUMED:
        assert_bitwise_equal(resumed[key], reference[key], key)
    untimed = [
        [{k: v for k, v in row.items() if k != "images_per_sec"} for row in state["history"]]
        for state in (resumed, reference)
    ]
    assert untimed[0] == untimed[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def torchrun(args: list[str], marker: str = "", nproc: int = 2) -> subprocess.Popen:
    """Start `torchrun --nproc-per-node nproc ARGS` on this machine, one thread per process."""
    env = os.environ | {
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
        "FACEGAN_TEST_RUN": marker,  # lets a test find its own workers among all processes
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
    command += ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{free_port()}"]
    return subprocess.Popen(
        [*command, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, err[-3000:]
    return out


def train_with_cli(run_dir: Path, *extra: str) -> subprocess.Popen:
    return torchrun(["-m", "facegan", "train", *TINY, "--out", str(run_dir), *extra])


def train_with_worker(run_dir: Path, dumps: Path, max_steps: int, *extra: str) -> None:
    """Train through this file's worker, which saves each rank's state in dumps/rank{r}.pt."""
    args = [__file__, str(dumps), str(max_steps), *TINY, "--out", str(run_dir), *extra]
    finish(torchrun(args))


def rank_states(dumps: Path) -> list[dict]:
    return [torch.load(dumps / f"rank{r}.pt", weights_only=True) for r in range(2)]


def assert_bitwise_equal(a: object, b: object, where: str = "") -> None:
    """a and b hold the same tensors, bit for bit, and the same plain data."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_bitwise_equal(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_bitwise_equal(x, y, f"{where}/{i}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def assert_ranks_agree(states: list[dict]) -> None:
    for key in SHARED:
        assert_bitwise_equal(states[0][key], states[1][key], key)


def checkpoint_of(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-process run trained from start to end through the CLI, never stopped."""
    run_dir = tmp_path_factory.mktemp("unbroken") / "run"
    finish(train_with_cli(run_dir))
    return run_dir


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A two-process run stopped after 3 steps (run folder, per-rank dumps)."""
    root = tmp_path_factory.mktemp("stopped")
    train_with_worker(root / "run", root / "dumps", 3)
    return root / "run", root / "dumps"


# The maths is independent of the world size


class HalvesBatchNorm(nn.BatchNorm2d):
    """BatchNorm as two ranks compute it over one global batch: statistics per half.

    Each rank normalises its own half. The running statistics are rank 0's, updated from the
    first half alone: DDP broadcasts rank 0's buffers, and the trainer syncs them to rank 0's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        first, second = x.chunk(2)
        other = F.batch_norm(second, None, None, self.weight, self.bias, True, 0.0, self.eps)
        return torch.cat([super().forward(first), other])


def one_process_of_two_halves(run_dir: Path) -> Trainer:
    """A plain trainer of the same settings whose BatchNorm layers work per half batch."""
    trainer = Trainer(tiny_config(run_dir))
    for network in (trainer.generator, trainer.discriminator):
        for module in network.modules():
            if type(module) is nn.BatchNorm2d:
                module.__class__ = HalvesBatchNorm
    return trainer


def test_two_processes_train_as_one_process_of_the_same_global_batch(stopped, tmp_path):
    _, dumps = stopped
    two = rank_states(dumps)[0]
    one = one_process_of_two_halves(tmp_path / "one")
    initial = {k: v.clone() for k, v in one.generator.state_dict().items()}
    stats = one.train_steps(3)
    for name, value in one.generator.state_dict().items():
        if value.is_floating_point():
            moved = (value - initial[name]).abs().max()
            differs = (value - two["generator"][name]).abs().max()
            # Equal within float tolerance: far closer than the 3 steps moved the weights.
            assert differs <= 1e-3 * moved + 1e-7, (name, differs, moved)
    for name, value in one.discriminator.state_dict().items():
        torch.testing.assert_close(value, two["discriminator"][name], rtol=1e-4, atol=1e-6)
    logged = [row for row in two["history"] if row["kind"] == "train"]
    for step_stats, row in zip(stats, logged, strict=True):
        for key, value in step_stats.items():
            assert row[key] == pytest.approx(value, rel=1e-4), key


def test_every_rank_holds_the_same_state_after_steps(stopped):
    _, dumps = stopped
    states = rank_states(dumps)
    assert_ranks_agree(states)
    assert states[0]["step"] == 3
    # The frozen-D step needed no DDP options, and two D forwards with buffer broadcasting
    # before one backward (BatchNorm in D) trained as one process does.
    assert states[0]["wrapper"] == {
        "type": "DistributedDataParallel",
        "find_unused_parameters": False,
        "broadcast_buffers": True,
        "d_has_batch_norm": True,
    }


def test_rank_0_alone_draws_the_sample_grids_through_the_plain_generator(unbroken):
    # A forward through the DDP wrapper on rank 0 alone would wait for the other rank, and
    # the run would fail after dist_timeout.
    grids = sorted(path.name for path in (unbroken / "samples").iterdir())
    assert grids == [f"epoch_{epoch:03d}.png" for epoch in range(1, EPOCHS + 1)]
    rows = [line for line in (unbroken / "history.jsonl").read_text().splitlines() if line]
    assert len(rows) == STEPS  # one writer: rank 0


def test_gradient_penalty_trains_under_ddp_with_one_backward(tmp_path):
    train_with_worker(tmp_path / "run", tmp_path, 3, "--loss", "wgan-gp", "--d-norm", "none")
    states = rank_states(tmp_path)
    assert_ranks_agree(states)
    penalties = [row["gradient_penalty"] for row in states[0]["history"]]
    assert len(penalties) == 3 and all(0 <= p < float("inf") for p in penalties)


# Faults


def workers_of(marker: str) -> dict[int, int]:
    """{rank: pid} of the torchrun workers whose environment carries marker."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = dict(
                item.split("=", 1)
                for item in (entry / "environ").read_bytes().decode(errors="replace").split("\0")
                if "=" in item
            )
        except OSError:
            continue  # gone, or not ours
        if environ.get("FACEGAN_TEST_RUN") == marker and "RANK" in environ:
            found[int(environ["RANK"])] = int(entry.name)
    return found


def wait_for_step(run_dir: Path, step: int, process: subprocess.Popen) -> None:
    checkpoint = run_dir / "checkpoints" / "last.pt"
    while process.poll() is None:
        if checkpoint.exists() and checkpoint_of(run_dir)["step"] >= step:
            return
        time.sleep(0.05)
    pytest.fail(f"the run ended before step {step}: {process.communicate()[1][-2000:]}")


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds workers in /proc")
def test_sigkill_of_one_rank_leaves_a_checkpoint_that_resumes_to_the_unbroken_run(
    tmp_path, unbroken
):
    run_dir, marker = tmp_path / "run", uuid.uuid4().hex
    process = torchrun(["-m", "facegan", "train", *TINY, "--out", str(run_dir)], marker)
    wait_for_step(run_dir, 2, process)
    os.kill(workers_of(marker)[1], signal.SIGKILL)
    process.communicate(timeout=120)
    assert process.returncode != 0  # torchrun ends every worker when one fails
    killed = checkpoint_of(run_dir)  # loads: the last checkpoint is whole
    assert 2 <= killed["step"] < STEPS
    assert killed["world_size"] == 2 and len(killed["rank_rngs"]) == 2
    # Every rank loads the checkpoint, and they stay alike through the end of the run.
    train_with_worker(run_dir, tmp_path / "dumps", 0, "--resume")
    assert_ranks_agree(rank_states(tmp_path / "dumps"))
    reference = checkpoint_of(unbroken)
    assert reference["step"] == STEPS
    assert_resumed_bitwise(checkpoint_of(run_dir), reference)


def test_a_process_whose_peers_never_come_stops_with_a_clear_message(tmp_path):
    # Rank 0 of two, launched as torchrun or a batch system launches it, with no rank 1.
    placement = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "localhost"}
    process = subprocess.run(
        [sys.executable, "-m", "facegan", "train", *TINY, "--out", str(tmp_path / "run")]
        + ["--dist-timeout", "3"],
        cwd=REPO,
        env=os.environ | placement | {"MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 2
    last_line = process.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: process 0 of 2 could not reach the others")
    assert "within 3 s" in last_line and "Traceback" not in process.stderr


# The world, in one process


def test_a_plain_run_joins_no_process_group_and_wraps_nothing(tmp_path, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    trainer = one_process_of_two_halves(tmp_path / "run")
    assert not trainer.world.active and not dist.is_initialized()
    assert trainer.d_forward is trainer.discriminator
    assert trainer.g_forward is trainer.generator
    trainer.fit(progress=False, max_steps=1)
    saved = checkpoint_of(tmp_path / "run")
    assert saved["world_size"] == 1 and "rank_rngs" not in saved


def test_the_environment_gives_rank_and_world_size():
    assert process_placement({}) == Placement()
    placement = process_placement({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"})
    assert placement == Placement(rank=3, local_rank=1, world_size=4, launched=True)
    assert not placement.is_main
    with pytest.raises(ConfigError, match="not all whole numbers"):
        process_placement({"RANK": "0", "WORLD_SIZE": "two"})
    with pytest.raises(ConfigError, match="does not fit WORLD_SIZE 2"):
        process_placement({"RANK": "2", "WORLD_SIZE": "2"})


def test_each_rank_takes_its_block_of_the_global_batch():
    batch = torch.arange(8)
    shares = [World(Placement(r, r, 2, True), torch.device("cpu")).share(batch) for r in (0, 1)]
    assert torch.equal(torch.cat(shares), batch)
    assert shares[1].tolist() == [4, 5, 6, 7]
    with pytest.raises(ConfigError, match="15 does not divide by 2"):
        World(Placement(0, 0, 2, True), torch.device("cpu")).check_batch_size(15)


def test_a_checkpoint_of_another_world_size_is_refused():
    world = World(Placement(0, 0, 2, True), torch.device("cpu"))
    with pytest.raises(CheckpointError, match="trained by 1 process.*this run has 2"):
        world.check_resume({"rng": {}}, "last.pt")


def test_sync_bn_is_refused_on_the_cpu():
    with pytest.raises(ConfigError, match="--sync-bn needs CUDA"):
        join(torch.device("cpu"), timeout_s=60, sync_bn=True)


@pytest.fixture
def world_of_one(monkeypatch) -> None:
    """This process as rank 0 of a gloo group of one, as `torchrun --nproc-per-node 1` makes."""
    port = str(free_port())
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"}
    for name, value in (env | {"MASTER_ADDR": "localhost", "MASTER_PORT": port}).items():
        monkeypatch.setenv(name, value)
    yield
    leave()


@pytest.mark.usefixtures("world_of_one")
def test_compile_wraps_the_compiled_network_and_trains_as_eager(tmp_path, monkeypatch):
    if not any(map(shutil.which, ("g++", "c++", "clang++"))):
        pytest.skip("compile on the CPU needs a C++ compiler")
    eager = Trainer(tiny_config(tmp_path / "eager"))
    eager_stats = eager.train_steps(2)
    # AOTAutograd traces forward and backward as inductor would, without building kernels.
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m: compile_(m, backend="aot_eager"))
    compiled = Trainer(tiny_config(tmp_path / "compiled", compile=True))
    assert compiled.world.active
    for wrapper, network in [
        (compiled.d_forward, compiled.discriminator),
        (compiled.g_forward, compiled.generator),
    ]:
        assert isinstance(wrapper, DistributedDataParallel)
        assert wrapper.module._orig_mod is network  # compiled, then wrapped
    compiled_stats = compiled.train_steps(2)
    for network in ("discriminator", "generator"):
        ours, theirs = getattr(compiled, network), getattr(eager, network)
        torch.testing.assert_close(ours.state_dict(), theirs.state_dict())
    # D frozen for G's step added nothing to the gradients of D's own step, compiled or not.
    d_grads = [[p.grad for p in t.discriminator.parameters()] for t in (compiled, eager)]
    torch.testing.assert_close(*d_grads)
    for ours, theirs in zip(compiled_stats, eager_stats, strict=True):
        assert ours == pytest.approx(theirs)


def test_an_unreachable_rendezvous_raises_a_distributed_error(monkeypatch):
    port = str(free_port())
    env = {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}
    for name, value in (env | {"MASTER_ADDR": "localhost", "MASTER_PORT": port}).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(DistributedError, match="process 1 of 2 could not reach the others"):
        join(torch.device("cpu"), timeout_s=2)


# The worker torchrun runs: trains like `python -m facegan train`, then saves each rank's state.


def worker(dumps: Path, max_steps: int, argv: list[str]) -> None:
    from facegan.__main__ import build_parser

    args = build_parser().parse_args(["train", *argv])
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    trainer = Trainer(config)
    if args.resume:
        trainer.resume()
    trainer.fit(progress=False, max_steps=max_steps or None)
    wrapper = trainer.d_forward
    state = trainer.state_dict() | {
        "wrapper": {
            "type": type(wrapper).__name__,
            "find_unused_parameters": wrapper.find_unused_parameters,
            "broadcast_buffers": wrapper.broadcast_buffers,
            "d_has_batch_norm": any(
                isinstance(m, nn.BatchNorm2d) for m in trainer.discriminator.modules()
            ),
        }
    }
    dumps.mkdir(parents=True, exist_ok=True)
    torch.save(state, dumps / f"rank{trainer.world.rank}.pt")
    leave()


if __name__ == "__main__":
    worker(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])
