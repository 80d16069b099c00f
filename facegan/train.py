"""Training: TrainConfig, the DCGAN step, and a Trainer with checkpoints and resume.

A run lives in one folder:

    runs/NAME/config.json         the settings, as given
    runs/NAME/history.jsonl       one row per logging window: losses, D(x), D(G(z))
    runs/NAME/samples/epoch_XXX.png  the fixed-z grid after each epoch
    runs/NAME/checkpoints/last.pt    everything needed to resume exactly

A resumed run is bitwise the run that was never stopped (on the CPU): the checkpoint holds
the networks, both optimizers, the z generator, the global RNGs and the history, and the
data order is a pure function of (seed, epoch). Checkpoints are written atomically at every
epoch end and, with checkpoint_every=K, every K steps, so a run killed outright (SIGKILL,
power cut) loses at most one checkpoint interval.

Sampling uses eval-mode BatchNorm (running statistics), so an image depends on its own z
alone and a checkpoint loaded later draws the same faces.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from facegan.data import FaceDataset, epoch_order, load_faces, to_float
from facegan.ema import WeightAverage
from facegan.errors import CheckpointError, ConfigError, FaceGanError
from facegan.losses import check_loss, discriminator_loss, generator_loss, gradient_penalty
from facegan.metrics import (
    CPU_TRAINING_METRICS,
    FID_SKIPPED,
    METRICS,
    Evaluator,
    is_better,
    to_uint8,
)
from facegan.models import (
    Generator,
    build_models,
    check_d_norm,
    check_image_size,
    check_positive,
)

# Format 2 added the global RNG states and the history rows.
CHECKPOINT_FORMAT = 2
DEVICES = ("auto", "cuda", "mps", "cpu")
PRECISIONS = ("auto", "fp32", "bf16")
CHANNELS_LAST = ("auto", "on", "off")
# What channels_last "auto" means on each kind of device: the memory format that trained faster
# there in benchmarks/throughput.py. On a 2-core AVX2 CPU (oneDNN, one thread) NHWC trained
# 32 px faster (116 against 105 images/s) and 64 px no slower. On CUDA it is not measured yet
# (transposed convolutions have shape-dependent NHWC paths), so auto keeps torch's NCHW there,
# as on every device not listed.
CHANNELS_LAST_AUTO = {"cpu": True}
COMPILERS = ("g++", "c++", "clang++")  # torch.compile builds C++ kernels with one on the CPU
# Fields that fix the shape of the generator, and of what a checkpoint holds besides it:
# a resume must not change them.
ARCHITECTURE_FIELDS = ("image_size", "z_size", "conv_dim")
RESUME_FIELDS = (*ARCHITECTURE_FIELDS, "d_norm", "ema_on")
GRID_PADDING = 2  # black pixels around and between the faces of a sample grid
# Evaluations draw their own z from seed + this, so they leave training's random streams alone.
EVAL_SEED_OFFSET = 7919
EVAL_BATCH = 512


class TrainingDiverged(FaceGanError):
    """A loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """Every setting of a run. The CLI flags and notebook parameters use the same names."""

    data: str = "synthetic"
    image_size: int = 32
    epochs: int = 10
    batch_size: int = 128
    z_size: int = 100
    conv_dim: int = 64
    n_images: int | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    out: str = "runs/default"
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    smooth: bool = False
    loss: str = "bce"  # one of facegan.losses.LOSSES
    d_norm: str = "batch"  # one of facegan.models.D_NORMS
    gp_weight: float = 10.0  # the gradient penalty's weight, for loss "wgan-gp"
    # Decay of an average of G's weights used for sampling; 0: off. On by default: it drew
    # the best faces for the same compute in benchmarks/quality.py.
    ema: float = 0.999
    flip: bool = False  # mirror a random half of each real batch
    eval_every: int = 0  # evaluate every K epochs (and after the last); 0: never
    eval_n: int = 2048  # faces drawn per evaluation
    n_samples: int = 64
    log_every: int = 20
    checkpoint_every: int = 0  # 0: checkpoints at epoch ends only; K: also every K steps
    channels_last: str = "auto"  # memory format of the networks and batches: on, off or auto
    threads: int = 0  # torch's CPU threads; 0: auto, see resolve_threads
    compile: bool = False  # run the training step's networks through torch.compile

    def validate(self) -> None:
        """Raise ConfigError naming the first setting that cannot work."""
        check_image_size(self.image_size)
        for name in ("epochs", "batch_size", "z_size", "conv_dim", "n_samples", "log_every"):
            check_positive(name, getattr(self, name))
        check_positive("eval_n", self.eval_n)
        _check_interval("eval_every", self.eval_every, "never", "epochs")
        _check_interval("checkpoint_every", self.checkpoint_every, "epoch ends only", "steps")
        _check_interval("threads", self.threads, "auto", "CPU threads")
        if self.channels_last not in CHANNELS_LAST:
            raise ConfigError(
                f"channels_last {self.channels_last!r} is unknown: choose one of {CHANNELS_LAST}."
            )
        if self.n_images is not None:
            check_positive("n_images", self.n_images)
        if self.device not in DEVICES:
            raise ConfigError(f"device {self.device!r} is unknown: choose one of {DEVICES}.")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"precision {self.precision!r} is unknown: choose one of {PRECISIONS}."
            )
        check_loss(self.loss, self.smooth)
        check_d_norm(self.d_norm)
        if self.loss == "wgan-gp" and self.d_norm == "batch":
            raise ConfigError(
                "loss wgan-gp penalises each image's gradient, which BatchNorm in D mixes "
                "across the batch: use --d-norm none or --d-norm spectral with it."
            )
        if self.compile and self.loss == "wgan-gp":
            raise ConfigError(
                "compile cannot train loss wgan-gp: torch.compile does not differentiate twice, "
                "which the gradient penalty needs. Drop --compile or choose another --loss."
            )
        if not 0 <= self.ema < 1:
            raise ConfigError(
                f"ema must be a decay in [0, 1) (0 turns it off; 0.999 is usual), got {self.ema!r}."
            )
        if not self.gp_weight >= 0:
            raise ConfigError(f"gp_weight must be zero or positive, got {self.gp_weight!r}.")
        if not (self.lr > 0 and 0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ConfigError(
                f"Adam settings lr={self.lr}, betas=({self.beta1}, {self.beta2}) are out of "
                "range: lr must be positive and each beta in [0, 1)."
            )


def _check_interval(name: str, every: object, zero_means: str, unit: str) -> None:
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise ConfigError(
            f"{name} must be 0 ({zero_means}) or a positive number of {unit}, got {every!r}."
        )


def resolve_device(name: str) -> torch.device:
    """The torch device: "auto" picks cuda, then mps, then cpu; others must exist here."""
    if name not in DEVICES:
        raise ConfigError(f"device {name!r} is unknown: choose one of {DEVICES}.")
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
    if name not in PRECISIONS:
        raise ConfigError(f"precision {name!r} is unknown: choose one of {PRECISIONS}.")
    if name == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else None
    return torch.bfloat16 if name == "bf16" else None


def resolve_channels_last(name: str, device: torch.device) -> bool:
    """Whether the networks and batches use channels_last (NHWC) memory on this device.

    "auto" is the format that trained faster on this kind of device (CHANNELS_LAST_AUTO).
    """
    if name not in CHANNELS_LAST:
        raise ConfigError(f"channels_last {name!r} is unknown: choose one of {CHANNELS_LAST}.")
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


def make_optimizers(
    discriminator: nn.Module,
    generator: nn.Module,
    lr: float = 2e-4,
    betas: tuple[float, float] = (0.5, 0.999),
    fused: bool = False,
) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for each network, with the DCGAN paper's lr 2e-4 and beta1 0.5.

    fused asks for torch's single-kernel Adam, which Trainer does on CUDA only; otherwise
    torch picks its default implementation, so CPU runs and their checkpoints are unchanged.
    """
    kind = {"fused": True} if fused else {}
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=betas, **kind)
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas, **kind)
    return d_optimizer, g_optimizer


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Within the block, module's trainable weights get no gradients; only those are thawed."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)


def train_step(
    discriminator: nn.Module,
    generator: nn.Module,
    d_optimizer: torch.optim.Optimizer,
    g_optimizer: torch.optim.Optimizer,
    real_images: torch.Tensor,
    z: torch.Tensor,
    smooth: bool = False,
    amp_dtype: torch.dtype | None = None,
    loss: str = "bce",
    gp_weight: float = 10.0,
) -> dict[str, torch.Tensor]:
    """One GAN update: a discriminator step, then a generator step on the same fakes.

    Returns detached scalars d_loss, g_loss, and d_real, d_fake: D's mean output on real and
    fake images before its update (a probability for "bce", the raw score otherwise), plus
    gradient_penalty for "wgan-gp". They stay on the device so that the caller decides when
    to pay for a host sync.
    """
    autocast = torch.autocast(real_images.device.type, amp_dtype, enabled=amp_dtype is not None)
    with autocast:
        fake_images = generator(z)
        d_real = discriminator(real_images)
        # detach: the discriminator's step must not push gradients into the generator.
        d_fake = discriminator(fake_images.detach())
        d_loss = discriminator_loss(d_real, d_fake, smooth, loss)
        if loss == "wgan-gp":
            penalty = gradient_penalty(discriminator, real_images, fake_images)
            d_loss = d_loss + gp_weight * penalty
    d_optimizer.zero_grad(set_to_none=True)
    d_loss.backward()
    d_optimizer.step()

    # G's update needs gradients through D, not D's own weight gradients: freezing D here skips
    # a third of D's backward work in this step (benchmarks/freeze.py times the difference).
    with frozen(discriminator):
        with autocast:  # the forward only: PyTorch advises against backward under autocast
            g_loss = generator_loss(discriminator(fake_images), loss)
        g_optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
    g_optimizer.step()
    d_real, d_fake = d_real.detach().float(), d_fake.detach().float()
    if loss == "bce":  # logits: report D's mean probability
        d_real, d_fake = d_real.sigmoid(), d_fake.sigmoid()
    stats = {
        "d_loss": d_loss.detach(),
        "g_loss": g_loss.detach(),
        "d_real": d_real.mean(),
        "d_fake": d_fake.mean(),
    }
    if loss == "wgan-gp":
        stats["gradient_penalty"] = penalty.detach()
    return stats


def save_atomic(obj: object, path: Path) -> None:
    """torch.save to a temp file, fsync, then rename: a crash leaves the old file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"could not write checkpoint {path} ({err.strerror or err}); the previous "
            "checkpoint, if any, is untouched. Free some disk space or choose another --out."
        ) from err


def _fsync_folder(folder: Path) -> None:
    """Make a rename in folder durable; where folders cannot be opened (Windows) skip it."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename is still atomic
    finally:
        os.close(handle)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint safely (weights_only: no code in it can run)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: train first, or check the path.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or unsafe files
        raise CheckpointError(
            f"checkpoint {path} could not be read ({type(err).__name__}); it is damaged, "
            "unsafe, or not a facegan checkpoint."
        ) from err
    found = state.get("format") if isinstance(state, dict) else None
    if found != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a facegan checkpoint of format {CHECKPOINT_FORMAT} (found format "
            f"{found!r}): it is another file, or was written by another version of facegan."
        )
    return state


def generator_from_checkpoint(path: str | os.PathLike, average: bool = True) -> Generator:
    """The trained generator of a checkpoint, in eval mode, on the CPU.

    With average (the default) it is the weight average when the run kept one (ema > 0).
    """
    return generator_from_state(load_checkpoint(path), path, average)


def generator_from_state(state: dict, path: str | os.PathLike, average: bool = True) -> Generator:
    """generator_from_checkpoint for a checkpoint already read by load_checkpoint from path."""
    try:
        config = {name: state["config"][name] for name in ARCHITECTURE_FIELDS}
        generator = Generator(config["z_size"], config["conv_dim"], config["image_size"])
        averaged = state.get("ema_generator") if average else None
        generator.load_state_dict(averaged or state["generator"])
    except (KeyError, TypeError, RuntimeError, FaceGanError) as err:
        # A hand-edited or foreign file: say so instead of showing load_state_dict's traceback.
        raise CheckpointError(
            f"checkpoint {path} holds no generator that fits its recorded architecture "
            f"({_describe(state.get('config'))}): {type(err).__name__}. It is damaged, or "
            "was not written by facegan."
        ) from err
    return generator.eval()


def _resume_view(config: dict) -> dict:
    """The RESUME_FIELDS of a config, with the defaults of fields older runs did not record."""
    view = {name: config.get(name) for name in ARCHITECTURE_FIELDS}
    view["d_norm"] = config.get("d_norm", "batch")
    view["ema_on"] = bool(config.get("ema", 0.0))
    return view


def _describe(config: object) -> str:
    if not isinstance(config, dict):
        return "none recorded"
    return ", ".join(f"{name} {config.get(name)!r}" for name in ARCHITECTURE_FIELDS)


def global_rng_state() -> dict:
    """The python, numpy and torch global RNG states, as tensors and plain lists and numbers.

    Plain data keeps the checkpoint loadable with torch.load(weights_only=True).
    """
    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached_gaussian)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_global_rng_state(state: dict) -> None:
    """Restore what global_rng_state() returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached_gaussian = state["numpy"]
    keys = np.array(keys, dtype=np.uint32)
    np.random.set_state((kind, keys, position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available():
        # A machine with fewer GPUs than the one that saved restores the GPUs it has.
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])


@torch.no_grad()
def sample_images(generator: Generator, z: torch.Tensor) -> torch.Tensor:
    """Images G(z) in [-1, 1], on the CPU, with eval-mode BatchNorm.

    z may live on any device; the generator's mode is restored afterwards.
    """
    was_training = generator.training
    generator.eval()
    try:
        return generator(z.to(next(generator.parameters()).device)).float().cpu()
    finally:
        generator.train(was_training)


def draw_faces(generator: Generator, n: int, seed: int) -> np.ndarray:
    """n faces of G as uint8 [n, S, S, 3], z drawn from seed, in batches of EVAL_BATCH."""
    z = torch.randn(n, generator.z_size, generator=torch.Generator().manual_seed(seed))
    return np.concatenate(
        [to_uint8(sample_images(generator, part)) for part in z.split(EVAL_BATCH)]
    )


def save_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int = 8) -> None:
    """Write images [N, 3, S, S] in [-1, 1] as one PNG grid, nrow to a row, 2 px apart.

    The layout and rounding of torchvision's save_image, without importing torchvision,
    which would double the start-up time of every command (and of every resume).
    """
    count, channels, height, width = images.shape
    columns = min(nrow, count)
    rows = math.ceil(count / columns)
    pad = GRID_PADDING
    grid = torch.zeros(channels, rows * (height + pad) + pad, columns * (width + pad) + pad)
    for k, image in enumerate(images.detach().float().cpu()):
        top, left = pad + (k // columns) * (height + pad), pad + (k % columns) * (width + pad)
        grid[:, top : top + height, left : left + width] = image.clamp(-1, 1).add(1).div(2)
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.numpy()).save(path)


class Trainer:
    """Trains one run. `fit()` returns the history; Ctrl-C saves and returns early."""

    def __init__(
        self,
        config: TrainConfig,
        dataset: FaceDataset | None = None,
        evaluator: Evaluator | None = None,
    ) -> None:
        """evaluator scores the faces when eval_every is set; by default one over the dataset."""
        config.validate()
        self.config = config
        self.device = resolve_device(config.device)
        self.amp_dtype = resolve_precision(config.precision, self.device)
        self.run_dir = Path(config.out)
        self.dataset = dataset or load_faces(
            config.data, config.image_size, config.n_images, config.seed
        )
        if self.dataset.image_size != config.image_size:
            raise ConfigError(
                f"the dataset holds {self.dataset.image_size} px images but "
                f"image_size is {config.image_size}."
            )
        self.steps_per_epoch = len(self.dataset) // config.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"batch_size {config.batch_size} is larger than the dataset "
                f"({len(self.dataset)} images): lower --batch-size."
            )
        # All global RNGs, not just torch's: code run inside training (an augmentation in the
        # notebook, say) then also draws the same numbers in a run and in its resumption.
        random.seed(config.seed)
        np.random.seed(config.seed % 2**32)
        torch.manual_seed(config.seed)
        self.discriminator, self.generator = build_models(
            config.z_size, config.conv_dim, config.image_size, config.d_norm
        )
        self.channels_last = resolve_channels_last(config.channels_last, self.device)
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        for model in (self.discriminator, self.generator):
            model.to(self.device, memory_format=self.memory_format)
        self.ema = WeightAverage(self.generator, config.ema) if config.ema else None
        # Fused Adam is opt-in and CUDA-only; the CPU keeps torch's default Adam.
        self.d_optimizer, self.g_optimizer = make_optimizers(
            self.discriminator,
            self.generator,
            config.lr,
            (config.beta1, config.beta2),
            fused=self.device.type == "cuda",
        )
        if self.device.type == "cuda":
            # Every batch has the same shape, so cuDNN's one-off search for its fastest
            # convolution algorithms pays for itself within the first epoch.
            torch.backends.cudnn.benchmark = True
        self.threads = resolve_threads(config.threads)
        # What train_step runs: with compile, wrappers that share the networks' parameters.
        # State dicts, sampling and the weight average use the plain modules, so checkpoint
        # keys carry no "_orig_mod." prefix and load with or without compile.
        self.d_forward: nn.Module = self.discriminator
        self.g_forward: nn.Module = self.generator
        if config.compile:
            check_compiler(self.device)
            self.d_forward = torch.compile(self.discriminator)
            self.g_forward = torch.compile(self.generator)
        # z comes from its own generator so that its state can be saved and resumed.
        self.z_rng = torch.Generator().manual_seed(config.seed)
        self.fixed_z = torch.randn(config.n_samples, config.z_size, generator=self.z_rng)
        # A copy in memory: batches are then drawn by index with no decoding and no disk reads.
        self.images = torch.from_numpy(np.array(self.dataset.images)).to(self.device)
        self.epoch = 0  # epochs completed
        self.batch_in_epoch = 0  # batches of the current epoch already trained
        self.step = 0
        self.history: list[dict] = []
        self.window: list[dict[str, torch.Tensor]] = []  # step stats not yet logged
        self.evaluator = evaluator

    @property
    def best_path(self) -> Path:
        return self.run_dir / "checkpoints" / "best.pt"

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    @property
    def sampling_generator(self) -> Generator:
        """The generator that draws the run's pictures: G's weight average when ema is on."""
        return self.ema.average if self.ema else self.generator

    def state_dict(self) -> dict:
        """Everything that a resume needs, as tensors and plain data only.

        There is no gradient scaler to save: bf16 autocast needs none (unlike fp16).
        """
        return {
            "format": CHECKPOINT_FORMAT,
            "config": asdict(self.config),
            "generator": self.generator.state_dict(),
            "ema_generator": self.ema.average.state_dict() if self.ema else None,
            "discriminator": self.discriminator.state_dict(),
            "g_optimizer": self.g_optimizer.state_dict(),
            "d_optimizer": self.d_optimizer.state_dict(),
            "fixed_z": self.fixed_z,
            "z_rng": self.z_rng.get_state(),
            "rng": global_rng_state(),
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "step": self.step,
            # The rows themselves: history.jsonl may be cut short or run ahead by a crash.
            "history": self.history,
            "window": [{k: v.cpu() for k, v in stats.items()} for stats in self.window],
        }

    def save_checkpoint(self) -> Path:
        save_atomic(self.state_dict(), self.checkpoint_path)
        return self.checkpoint_path

    def resume(self) -> None:
        """Load the run folder's last checkpoint; history.jsonl is rewritten to match it."""
        state = load_checkpoint(self.checkpoint_path)
        saved, now = _resume_view(state["config"]), _resume_view(asdict(self.config))
        changed = [
            f"{k}: checkpoint {saved[k]!r}, now {now[k]!r}"
            for k in RESUME_FIELDS
            if saved[k] != now[k]
        ]
        if changed:
            raise CheckpointError(
                f"cannot resume {self.checkpoint_path}: the architecture differs ("
                + "; ".join(changed)
                + "). Resume with the original settings or use a new --out."
            )
        self.generator.load_state_dict(state["generator"])
        if self.ema:
            self.ema.average.load_state_dict(state["ema_generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.g_optimizer.load_state_dict(state["g_optimizer"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
        self.fixed_z = state["fixed_z"]
        self.z_rng.set_state(state["z_rng"])
        set_global_rng_state(state["rng"])
        self.epoch, self.batch_in_epoch = state["epoch"], state["batch_in_epoch"]
        self.step = state["step"]
        self.window = [{k: v.to(self.device) for k, v in s.items()} for s in state["window"]]
        self.history = state["history"]
        write_history(self.run_dir, self.history)

    def fit(self, progress: bool = True, max_steps: int | None = None) -> list[dict]:
        """Train until config.epochs epochs are done; returns the history rows.

        Ctrl-C (SIGINT) and SIGTERM finish the current step, save a checkpoint and return;
        so does reaching max_steps steps in all (a compute budget; resume continues).
        """
        if self.step == 0 and self.checkpoint_path.exists():
            raise ConfigError(
                f"{self.run_dir} already holds a run: resume it (--resume, Trainer.resume()) "
                "or choose another --out, so that its checkpoint is not overwritten."
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.step == 0:
            write_history(self.run_dir, [])
        _replace_text(self.run_dir / "config.json", json.dumps(asdict(self.config), indent=2))
        torch.set_num_threads(self.threads)
        with StopSignals() as stop:
            while self.epoch < self.config.epochs:
                if not self._train_epoch(progress, stop, max_steps):
                    path = self.save_checkpoint()
                    print(
                        f"\nStopped by {stop.received or 'max_steps'} at step {self.step}: saved "
                        f"{path}. Continue with --resume (or Trainer.resume())."
                    )
                    break
                self.epoch += 1
                self.batch_in_epoch = 0
                save_grid(
                    sample_images(self.sampling_generator, self.fixed_z),
                    self.run_dir / "samples" / f"epoch_{self.epoch:03d}.png",
                )
                if self._evaluation_due():
                    best = best_evaluation(self.history)
                    if is_better(self.evaluate(progress), best):
                        # best.pt before last.pt: a crash between the two re-runs this epoch's
                        # evaluation on resume, which then writes best.pt again.
                        save_atomic(self.state_dict(), self.best_path)
                self.save_checkpoint()
        return self.history

    def _evaluation_due(self) -> bool:
        every = self.config.eval_every
        return bool(every) and (self.epoch % every == 0 or self.epoch == self.config.epochs)

    def evaluate(self, progress: bool = True) -> dict:
        """Score eval_n faces of the sampling generator; the row joins the history."""
        config = self.config
        if self.evaluator is None:
            self.evaluator = Evaluator(
                np.asarray(self.dataset.images[: config.eval_n]),
                synthetic=self.dataset.attributes is not None,
                reference_key=self.dataset.key,
                metrics=METRICS if self.device.type == "cuda" else CPU_TRAINING_METRICS,
                progress=progress,
            )
        faces = draw_faces(self.sampling_generator, config.eval_n, config.seed + EVAL_SEED_OFFSET)
        row = {"kind": "eval", "epoch": self.epoch, "step": self.step, **self.evaluator(faces)}
        if "fid" not in self.evaluator.metrics:
            row.setdefault("fid_unavailable", FID_SKIPPED)
        self._append(row)
        return row

    def _append(self, row: dict) -> None:
        self.history.append(row)
        with open(self.run_dir / "history.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def _train_epoch(self, progress: bool, stop: StopSignals, max_steps: int | None) -> bool:
        """Train the rest of the epoch; False if a stop signal or max_steps cut it short."""
        config = self.config
        bar = tqdm(
            total=self.steps_per_epoch,
            initial=self.batch_in_epoch,
            disable=not progress,
            desc=f"epoch {self.epoch + 1}/{config.epochs}",
            unit="batch",
            leave=False,
        )
        started = time.perf_counter()
        with bar:
            for real_images in self._batches():
                if stop.received or self.step == max_steps:
                    return False
                self.window.append(self._train_batch(real_images))
                bar.update()
                # Windows end at fixed steps, so a resumed run logs the same rows.
                if self.step % config.log_every == 0 or self.batch_in_epoch == self.steps_per_epoch:
                    row = self._log(time.perf_counter() - started)
                    bar.set_postfix(d_loss=f"{row['d_loss']:.3f}", g_loss=f"{row['g_loss']:.3f}")
                    started = time.perf_counter()
                # The epoch's last step is saved by fit() once the epoch is closed.
                every = config.checkpoint_every
                if every and self.step % every == 0 and self.batch_in_epoch < self.steps_per_epoch:
                    self.save_checkpoint()
        return not (stop.received or self.step == max_steps)

    def _train_batch(self, real_images: torch.Tensor) -> dict[str, torch.Tensor]:
        """One step on one batch with the run's next z; its stats stay on the device."""
        config = self.config
        z = torch.randn(config.batch_size, config.z_size, generator=self.z_rng)
        stats = train_step(
            self.d_forward,
            self.g_forward,
            self.d_optimizer,
            self.g_optimizer,
            real_images,
            z.to(self.device),
            config.smooth,
            self.amp_dtype,
            config.loss,
            config.gp_weight,
        )
        if self.ema:
            self.ema.update(self.generator, self.step)
        self.step += 1
        self.batch_in_epoch += 1
        return stats

    def train_steps(self, count: int) -> list[dict[str, float]]:
        """Train `count` steps as fit() does, but write nothing; returns each step's stats.

        For timing and experiments: no logging, samples, evaluations or checkpoints, and one
        host sync at the end. Epochs roll over without fit()'s epoch-end work.
        """
        check_positive("count", count)
        torch.set_num_threads(self.threads)
        pending: list[dict[str, torch.Tensor]] = []
        while len(pending) < count:
            for real_images in self._batches():
                pending.append(self._train_batch(real_images))
                if len(pending) == count:
                    break
            if self.batch_in_epoch == self.steps_per_epoch:
                self.epoch += 1
                self.batch_in_epoch = 0
        names = list(pending[0])
        rows = torch.stack([torch.stack([s[k].float() for k in names]) for s in pending])
        return [dict(zip(names, row, strict=True)) for row in rows.tolist()]

    def _batches(self) -> Iterator[torch.Tensor]:
        """The rest of this epoch's batches, in an order fixed by (seed, epoch)."""
        size = self.config.batch_size
        order = epoch_order(len(self.images), self.config.seed, self.epoch)
        for b in range(self.batch_in_epoch, self.steps_per_epoch):
            index = order[b * size : (b + 1) * size].to(self.device)
            batch = to_float(self.images[index])
            if self.config.flip:
                # Drawn from z_rng, whose state the checkpoint keeps: a resume flips the same.
                mirror = torch.rand(size, generator=self.z_rng) < 0.5
                mirror = mirror.to(self.device).view(size, 1, 1, 1)
                batch = torch.where(mirror, batch.flip(3), batch)
            yield batch.contiguous(memory_format=self.memory_format)

    def _log(self, seconds: float) -> dict:
        """Average the window's stats (one host sync), check them, append a history row."""
        window, self.window = self.window, []
        means = {k: torch.stack([s[k] for s in window]).mean().item() for k in window[0]}
        if not all(math.isfinite(v) for v in means.values()):
            raise TrainingDiverged(
                f"a loss became non-finite by step {self.step} ({means}). The last good "
                f"checkpoint, {self.checkpoint_path}, was left untouched; resume from it with a "
                "lower learning rate, or with precision fp32."
            )
        row = {
            "kind": "train",
            "epoch": self.epoch + 1,
            "step": self.step,
            **means,
            "images_per_sec": len(window) * self.config.batch_size / max(seconds, 1e-9),
        }
        self._append(row)
        return row


class StopSignals:
    """While active, SIGINT and SIGTERM only set `received`; the loop stops between steps.

    Stopping between steps, never inside one, is what makes the saved state exact. A second
    Ctrl-C interrupts at once. Outside the main thread signals cannot be caught, so this
    does nothing there.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, number: int, _frame: object) -> None:
        if self.received and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(number).name

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *_exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def best_evaluation(history: list[dict]) -> dict | None:
    """The evaluation row that ranks best by its main metric, or None before any."""
    best = None
    for row in history:
        if row.get("kind") == "eval" and is_better(row, best):
            best = row
    return best


def read_history(run_dir: str | os.PathLike) -> list[dict]:
    """The rows of a run's history.jsonl (empty if there is none yet)."""
    path = Path(run_dir) / "history.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_history(run_dir: str | os.PathLike, rows: list[dict]) -> None:
    """Replace a run's history.jsonl with rows."""
    path = Path(run_dir) / "history.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def _replace_text(path: Path, text: str) -> None:
    """Write a text file by rename, so that a crash leaves the old file or the new, whole."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
