"""TrainConfig: every setting of a run, its help text and its choices; validation, once.

Each field carries its help text and, where it has them, its choices in the field's metadata.
The `train` command's flags are built from the fields (`--batch-size` for batch_size), and the
notebook's parameters are the fields' names upper-cased (BATCH_SIZE), mapped by
config_from_parameters. TrainConfig.validate checks every setting, with the checks below, before
any work starts; the modules that take the same values as arguments reuse these checks.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from facegan.errors import ConfigError
from facegan.images import IMAGE_SIZES, check_image_size

DEVICES = ("auto", "cuda", "mps", "cpu")
PRECISIONS = ("auto", "fp32", "bf16")
CHANNELS_LAST = ("auto", "on", "off")
LOSSES = ("bce", "lsgan", "hinge", "wgan-gp")
# Objectives whose real target is a label that smoothing can lower.
SMOOTHABLE = ("bce", "lsgan")
# How D normalises its hidden layers: the paper's BatchNorm, spectral norm on every conv
# (Miyato et al. 2018; no BatchNorm), or nothing (the critic of WGAN-GP, whose per-image
# gradient penalty BatchNorm would mix across the batch).
D_NORMS = ("batch", "spectral", "none")
# The recipe: the settings whose best value depends on the kind of data. A field of these left
# at None (the default of the CLI, and of the notebook's parameters) takes its value from here
# when the TrainConfig is made, and config.json records the value taken. The built-in faces keep
# the batch and the report length of their recipe study (docs/metrics.md). On real faces the
# studies on the CelebA development set, ranked by the face distance at equal compute in two
# seeds (benchmarks/results/quality-celeba-*.json), chose batch 16: at 32 px on a CPU smaller
# batches buy more steps; and 20 epochs of its 10,000 faces fill about two minutes of a 2-core
# CPU, a report that stays well inside ten. On a GPU a batch this small leaves the device idle,
# and on the whole of CelebA (200,000 faces) an epoch is 20 times as long: pass --batch-size
# and --epochs there.
RECIPES: dict[str, dict[str, Any]] = {
    "synthetic": {"epochs": 8, "batch_size": 64},
    "real": {"epochs": 20, "batch_size": 16},
}
# The notebook's earlier names of two parameters; `python -m facegan report -p` still takes them.
PARAMETER_ALIASES = {"DATASET": "DATA", "RUN_DIR": "OUT"}


def setting(default: Any, help_text: str, choices: Sequence | None = None) -> Any:
    """A TrainConfig field: its default, its help text and, if it has them, its choices."""
    metadata = {"help": help_text}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Every setting of a run. The CLI flags and notebook parameters use the same names."""

    data: str = setting(
        "synthetic", '"synthetic" (built in), "celeba" (under data/), or a folder or .zip of images'
    )
    image_size: int = setting(32, "a power of two from 16 to 256", IMAGE_SIZES)
    epochs: int | None = setting(
        None, "passes over the data (default: the data's recipe, 8 built in, 20 real)"
    )
    batch_size: int | None = setting(
        None, "images per training step (default: the data's recipe, 64 built in, 16 real)"
    )
    z_size: int = setting(100, "length of the latent vector z")
    conv_dim: int = setting(64, "channels of D's first and G's last hidden layer")
    n_images: int | None = setting(
        None, "use only the first N images (default: all real ones; 20000 synthetic)"
    )
    seed: int = setting(0, "seeds the networks, z, the data order and the built-in faces")
    device: str = setting("auto", "where to train; auto: cuda, then mps, then cpu", DEVICES)
    precision: str = setting(
        "auto",
        "auto: bf16 where the hardware computes it (a recent GPU, a CPU with AMX or "
        "AVX512-BF16), else fp32; a resume keeps the precision the run recorded",
        PRECISIONS,
    )
    out: str = setting("runs/default", "the run folder")
    lr: float = setting(2e-4, "Adam's learning rate")
    beta1: float = setting(0.5, "Adam's beta1")
    beta2: float = setting(0.999, "Adam's beta2")
    smooth: bool = setting(False, "real-label smoothing (0.9), for bce and lsgan")
    loss: str = setting("bce", "the GAN objective", LOSSES)
    d_norm: str = setting("batch", "D's normalisation (wgan-gp needs none or spectral)", D_NORMS)
    gp_weight: float = setting(10.0, "weight of the gradient penalty of --loss wgan-gp")
    # On by default: the EMA drew the best faces for the same compute in benchmarks/quality.py.
    ema: float = setting(
        0.999, "sample from an EMA of G's weights with this decay, e.g. 0.999; 0: off"
    )
    flip: bool = setting(False, "mirror a random half of each real batch")
    eval_every: int = setting(
        0, "measure the faces every K epochs and keep checkpoints/best.pt; 0: never"
    )
    eval_n: int = setting(2048, "faces drawn per evaluation")
    n_samples: int = setting(64, "faces in the fixed-z grid drawn after each epoch")
    log_every: int = setting(20, "steps per history row")
    checkpoint_every: int = setting(
        0, "also save a checkpoint every K steps; 0: only at epoch ends"
    )
    channels_last: str = setting(
        "auto", "channels_last memory format; auto: on where it measured faster", CHANNELS_LAST
    )
    threads: int = setting(0, "CPU threads for torch; 0: auto (torch's count, at most the cores)")
    compile: bool = setting(False, "torch.compile G and D for training")
    sync_bn: bool = setting(
        False, "under torchrun: BatchNorm statistics over the global batch (CUDA only)"
    )
    dist_timeout: int = setting(
        60, "under torchrun: seconds to wait for the other processes before stopping with an error"
    )

    def __post_init__(self) -> None:
        """Fill the fields left at None from the data's recipe (RECIPES)."""
        for name, value in RECIPES[data_kind(self.data)].items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    def validate(self) -> None:
        """Raise ConfigError naming the first setting that cannot work."""
        check_image_size(self.image_size)
        for name in ("epochs", "batch_size", "z_size", "conv_dim", "n_samples", "log_every"):
            check_positive(name, getattr(self, name))
        check_positive("eval_n", self.eval_n)
        check_positive("dist_timeout", self.dist_timeout)
        check_interval("eval_every", self.eval_every, "never", "epochs")
        check_interval("checkpoint_every", self.checkpoint_every, "epoch ends only", "steps")
        check_interval("threads", self.threads, "auto", "CPU threads")
        if self.n_images is not None:
            check_positive("n_images", self.n_images)
        for each in fields(self):
            if "choices" in each.metadata:
                check_choice(each.name, getattr(self, each.name), each.metadata["choices"])
        check_loss(self.loss, self.smooth)
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


def data_kind(data: object) -> str:
    """The key of the data's recipe: "synthetic" for the built-in faces, "real" for the rest."""
    return "synthetic" if data == "synthetic" else "real"


def config_from_parameters(parameters: Mapping[str, object]) -> TrainConfig:
    """The validated TrainConfig of notebook parameters: each field's name upper-cased.

    Names that are no field's (a notebook's other globals) are ignored; fields without a
    parameter keep their defaults.
    """
    values = {
        each.name: parameters[each.name.upper()]
        for each in fields(TrainConfig)
        if each.name.upper() in parameters
    }
    config = TrainConfig(**values)
    config.validate()
    return config


def check_positive(name: str, value: object) -> None:
    """Raise ConfigError unless value is a positive whole number."""
    whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not whole or value < 1:
        raise ConfigError(f"{name} must be a positive whole number, got {value!r}.")


def check_interval(name: str, every: object, zero_means: str, unit: str) -> None:
    """Raise ConfigError unless every is 0 (which means zero_means) or a positive count."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise ConfigError(
            f"{name} must be 0 ({zero_means}) or a positive number of {unit}, got {every!r}."
        )


def check_choice(name: str, value: object, choices: Sequence) -> None:
    """Raise ConfigError unless value is one of choices."""
    if value not in choices:
        raise ConfigError(f"{name} {value!r} is unknown: choose one of {tuple(choices)}.")


def check_loss(loss: str, smooth: bool = False) -> None:
    """Raise ConfigError for an unknown objective, or smoothing one that has no label."""
    check_choice("loss", loss, LOSSES)
    if smooth and loss not in SMOOTHABLE:
        raise ConfigError(
            f"label smoothing needs a loss with a real label ({', '.join(SMOOTHABLE)}); "
            f"{loss!r} has none. Drop --smooth or choose another --loss."
        )
