"""Trainer: epochs, logging, sample grids, evaluation, checkpoints, stop signals and resume.

A run lives in one folder:

    runs/NAME/config.json         the settings, as given; precision as resolved
    runs/NAME/history.jsonl       one row per logging window: losses, D(x), D(G(z))
    runs/NAME/samples/epoch_XXX.png  the fixed-z grid after each epoch
    runs/NAME/checkpoints/last.pt    everything needed to resume exactly

A resumed run is bitwise the run that was never stopped (on the CPU): resume.py says what
the checkpoint holds, and the data order is a pure function of (seed, epoch). Checkpoints are
written atomically at every epoch end and, with checkpoint_every=K, every K steps, so a run
killed outright (SIGKILL, power cut) loses at most one checkpoint interval.

Sampling uses eval-mode BatchNorm (running statistics), so an image depends on its own z
alone and a checkpoint loaded later draws the same faces.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import asdict
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from facegan import distributed
from facegan.batches import batches_per_epoch, epoch_batches, image_tensor
from facegan.checkpoint import global_rng_state, save_atomic, write_atomic
from facegan.config import TrainConfig, check_positive
from facegan.data import FaceDataset, epoch_order, load_faces
from facegan.ema import EMA
from facegan.errors import ConfigError, FaceGanError
from facegan.evaluate import (
    EVAL_SEED_OFFSET,
    FID_SKIPPED,
    Evaluator,
    best_evaluation,
    draw_faces,
    is_better,
    training_metrics,
)
from facegan.history import append_history, write_history
from facegan.images import save_grid
from facegan.learner import StepFunction, check_given_parts, given_stats, take_flat_z
from facegan.models import build_models, sample_images
from facegan.resume import restore_trainer, trainer_state, write_config
from facegan.runlock import RunLock
from facegan.runtime import (
    check_compiler,
    precision_name,
    resolve_channels_last,
    resolve_device,
    resolve_precision,
    resolve_threads,
)
from facegan.signals import StopSignals
from facegan.step import make_optimizers, train_step

# facegan's own step, which a notebook may also pass explicitly (the solution notebook does).
RECIPE_STEP = train_step


class TrainingDiverged(FaceGanError):
    """A loss became NaN or infinite."""


class Trainer:
    """Trains one run. `fit()` returns the history; Ctrl-C saves and returns early."""

    def __init__(
        self,
        config: TrainConfig,
        dataset: FaceDataset | None = None,
        evaluator: Evaluator | None = None,
        *,
        discriminator: nn.Module | None = None,
        generator: nn.Module | None = None,
        d_optimizer: torch.optim.Optimizer | None = None,
        g_optimizer: torch.optim.Optimizer | None = None,
        train_step: StepFunction | None = None,
        z_shape: str = "flat",
    ) -> None:
        """evaluator scores the faces when eval_every is set; by default one over the dataset.

        The networks, their optimizers and the step are facegan's unless given, as a learner's
        notebook gives its own. A train_step other than facegan's is called as the course's,
        train_step(D, G, d_optimizer, g_optimizer, real_images, z), and returns STEP_STATS as
        floats or tensors. z_shape is the z the generator takes, one of Z_SHAPES
        (problem_unittests.z_shape_for finds it).
        """
        config.validate()
        own_step = train_step is None or train_step is RECIPE_STEP
        check_given_parts(
            config,
            discriminator=discriminator,
            networks_given=discriminator is not None and generator is not None,
            optimizers_given=(d_optimizer is not None, g_optimizer is not None),
            own_step=own_step,
            z_shape=z_shape,
        )
        self.given_step = None if own_step else train_step
        self.config = config
        self.device = resolve_device(config.device)
        # Under torchrun: this process's rank and, on CUDA, its own GPU; else rank 0 of one.
        self.world = distributed.join(
            self.device, timeout_s=config.dist_timeout, sync_bn=config.sync_bn
        )
        self.device = self.world.device
        # A given step computes as written: autocast is an option of facegan's own step.
        self.amp_dtype = resolve_precision(config.precision, self.device) if own_step else None
        self.run_dir = Path(config.out)
        self.dataset = dataset or load_faces(
            config.data, config.image_size, config.n_images, config.seed
        )
        if self.dataset.image_size != config.image_size:
            raise ConfigError(
                f"the dataset holds {self.dataset.image_size} px images but "
                f"image_size is {config.image_size}."
            )
        self.world.check_batch_size(config.batch_size)
        self.steps_per_epoch = batches_per_epoch(len(self.dataset), config.batch_size)
        # All global RNGs, not just torch's: code run inside training (an augmentation in the
        # notebook, say) then also draws the same numbers in a run and in its resumption.
        random.seed(config.seed)
        np.random.seed(config.seed % 2**32)
        torch.manual_seed(config.seed)
        if discriminator is None or generator is None:
            built = build_models(config.z_size, config.conv_dim, config.image_size, config.d_norm)
            discriminator = built[0] if discriminator is None else discriminator
            generator = built[1] if generator is None else generator
        self.discriminator, self.generator = discriminator, generator
        if z_shape == "4d":
            take_flat_z(self.generator, config.z_size)
        self.world.seed_rank(config.seed)
        self.channels_last = resolve_channels_last(config.channels_last, self.device)
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        for model in (self.discriminator, self.generator):
            model.to(self.device, memory_format=self.memory_format)
        self.ema = EMA(self.generator, config.ema) if config.ema else None
        if d_optimizer is None:  # then g_optimizer is None too: check_given_parts
            # Fused Adam is opt-in and CUDA-only; the CPU keeps torch's default Adam.
            d_optimizer, g_optimizer = make_optimizers(
                self.discriminator,
                self.generator,
                config.lr,
                (config.beta1, config.beta2),
                fused=self.device.type == "cuda",
            )
        self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer
        if self.device.type == "cuda":
            # Every batch has the same shape, so cuDNN's one-off search for its fastest
            # convolution algorithms pays for itself within the first epoch.
            torch.backends.cudnn.benchmark = True
        self.threads = resolve_threads(config.threads)
        # What train_step runs: with compile, wrappers that share the networks' parameters.
        # State dicts, sampling and the EMA use the plain modules, so checkpoint keys carry
        # no "_orig_mod." prefix and load with or without compile.
        self.d_forward: nn.Module = self.discriminator
        self.g_forward: nn.Module = self.generator
        if config.compile:
            check_compiler(self.device)
            self.d_forward = torch.compile(self.discriminator)
            self.g_forward = torch.compile(self.generator)
        self.d_forward = self.world.wrap(self.d_forward)  # compiled first, then wrapped
        self.g_forward = self.world.wrap(self.g_forward)
        # z comes from its own generator so that its state can be saved and resumed.
        self.z_rng = torch.Generator().manual_seed(config.seed)
        self.fixed_z = torch.randn(config.n_samples, config.z_size, generator=self.z_rng)
        # On the CPU the dataset's memory-mapped cache itself; a GPU gets a copy (batches.py).
        self.images = image_tensor(self.dataset.images).to(self.device)
        self.epoch = 0  # epochs completed
        self.batch_in_epoch = 0  # batches of the current epoch already trained
        self.step = 0
        self.history: list[dict] = []
        self.window: list[dict[str, torch.Tensor]] = []  # step stats not yet logged
        self.evaluator = evaluator
        if config.eval_every and evaluator is None:  # refused before training if unmeasurable
            self.evaluator = self._default_evaluator()
            self.evaluator.check_size(config.eval_n)

    @property
    def best_path(self) -> Path:
        return self.run_dir / "checkpoints" / "best.pt"

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    @property
    def ema_generator(self) -> nn.Module:
        """The generator that draws the run's pictures: the EMA of G's weights when ema > 0.

        With ema 0 there is no averaging, and that generator is G itself.
        """
        return self.ema.model if self.ema else self.generator

    def recorded_config(self) -> dict:
        """The settings as config.json and checkpoints record them: precision as resolved.

        "auto" is written as what it chose here ("bf16" or "fp32"), so a resume elsewhere keeps
        the run's arithmetic.
        """
        return asdict(self.config) | {"precision": precision_name(self.amp_dtype)}

    def state_dict(self) -> dict:
        """Everything that a resume needs, as tensors and plain data only (resume.trainer_state)."""
        return trainer_state(self)

    def save_checkpoint(self) -> Path:
        """Rank 0 writes last.pt, with every rank's RNG states; the other ranks wait for it."""
        rank_rngs = self.world.gather(global_rng_state())
        if self.world.is_main:
            extra = {"rank_rngs": rank_rngs} if self.world.size > 1 else {}
            save_atomic(self.state_dict() | extra, self.checkpoint_path)
        self.world.barrier()
        return self.checkpoint_path

    @cached_property
    def run_lock(self) -> RunLock:
        return RunLock(self.run_dir)

    def resume(self, allow_changes: bool = False) -> None:
        """Load the run folder's last checkpoint; history.jsonl is rewritten to match it.

        Settings that differ from the run's own are refused as resume.check_resume says;
        with allow_changes those that may change on purpose are taken and recorded as a
        "change" row of the history. config.json then holds the new settings. The run folder
        stays locked from here until fit() ends.
        """
        # Rank 0 alone holds the lock. A missing folder holds no run to lock; loading says so.
        if self.world.is_main and self.run_dir.is_dir():
            self.run_lock.acquire()
        try:
            restore_trainer(self, allow_changes)
        except BaseException:
            self.run_lock.release()
            raise

    def fit(self, progress: bool = True, max_steps: int | None = None) -> list[dict]:
        """Train until config.epochs epochs are done; returns the history rows.

        Ctrl-C (SIGINT) and SIGTERM finish the current step, save a checkpoint and return;
        so does reaching max_steps steps in all (a compute budget; resume continues). The run
        folder is locked while it trains: a second run there is refused with RunInUseError.
        """
        if self.world.is_main:
            self.run_lock.acquire()
        try:
            return self._fit(progress, max_steps)
        finally:
            self.run_lock.release()

    def _fit(self, progress: bool, max_steps: int | None) -> list[dict]:
        if self.step == 0 and self.checkpoint_path.exists():
            raise ConfigError(
                f"{self.run_dir} already holds a run: resume it (--resume, Trainer.resume()) "
                "or choose another --out, so that its checkpoint is not overwritten."
            )
        # A resumed run keeps its config.json, unless resume() recorded a change.
        if self.step == 0 and self.world.is_main:
            write_history(self.run_dir, [])
            write_config(self)
        torch.set_num_threads(self.threads)
        with StopSignals() as stop:
            while self.epoch < self.config.epochs:
                if not self._train_epoch(progress, stop, max_steps):
                    path = self.save_checkpoint()
                    if self.world.is_main:
                        print(
                            f"\nStopped by {stop.received or 'max_steps'} at step {self.step}: "
                            f"saved {path}. Continue with --resume (or Trainer.resume())."
                        )
                    break
                self.epoch += 1
                self.batch_in_epoch = 0
                if self.world.is_main:  # alone, through the plain modules; the others wait
                    self._save_samples(self.run_dir / "samples" / f"epoch_{self.epoch:03d}.png")
                    self._evaluate_for_best(progress)
                self.save_checkpoint()
        return self.history

    def _evaluate_for_best(self, progress: bool) -> None:
        """Evaluate when due; a better result than any before is also saved as best.pt."""
        if self._evaluation_due():
            best = best_evaluation(self.history)
            if is_better(self.evaluate(progress), best):
                # best.pt before last.pt: a crash between the two re-runs this epoch's
                # evaluation on resume, which then writes best.pt again.
                save_atomic(self.state_dict(), self.best_path, self.checkpoint_path)

    def _save_samples(self, path: Path) -> None:
        """The fixed-z grid, written by rename; its temporary file keeps the suffix PIL reads."""
        faces = sample_images(self.ema_generator, self.fixed_z)
        write_atomic(
            path,
            lambda temp: save_grid(faces, temp),
            checkpoint=self.checkpoint_path,
            temp=path.with_name(f".{path.name}"),
        )

    def _evaluation_due(self) -> bool:
        every = self.config.eval_every
        return bool(every) and (self.epoch % every == 0 or self.epoch == self.config.epochs)

    def evaluate(self, progress: bool = True) -> dict:
        """Score eval_n faces of the EMA generator; the row joins the history."""
        config = self.config
        if self.evaluator is None:
            self.evaluator = self._default_evaluator()
        self.evaluator.progress = progress
        faces = draw_faces(self.ema_generator, config.eval_n, config.seed + EVAL_SEED_OFFSET)
        row = {"kind": "eval", "epoch": self.epoch, "step": self.step, **self.evaluator(faces)}
        if "fid" not in self.evaluator.metrics:
            row.setdefault("fid_unavailable", FID_SKIPPED)
        self._append(row)
        return row

    def _default_evaluator(self) -> Evaluator:
        """An Evaluator against the first eval_n faces of the training data."""
        return Evaluator(
            np.asarray(self.dataset.images[: self.config.eval_n]),
            synthetic=self.dataset.attributes is not None,
            reference_key=self.dataset.key,
            metrics=training_metrics(self.device),
        )

    def _append(self, row: dict) -> None:
        self.history.append(row)
        if self.world.is_main:
            append_history(self.run_dir, row)

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
                if self.world.any(stop.received) or self.step == max_steps:
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
        return not (self.world.any(stop.received) or self.step == max_steps)

    def _train_batch(self, real_images: torch.Tensor) -> dict[str, torch.Tensor]:
        """One step on one batch with the run's next z; its stats stay on the device."""
        config = self.config
        z = self.world.share(torch.randn(config.batch_size, config.z_size, generator=self.z_rng))
        networks = (self.d_forward, self.g_forward, self.d_optimizer, self.g_optimizer)
        if self.given_step is None:
            stats = train_step(
                *networks,
                real_images,
                z.to(self.device),
                smooth=config.smooth,
                amp_dtype=self.amp_dtype,
                loss=config.loss,
                gp_weight=config.gp_weight,
            )
        else:
            step_stats = self.given_step(*networks, real_images, z.to(self.device))
            stats = given_stats(step_stats, self.device)
        self.world.sync_buffers(self.generator, self.discriminator)
        if self.ema:
            self.ema.update(self.generator, self.step)
        self.step += 1
        self.batch_in_epoch += 1
        return self.world.mean(stats)

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
        return epoch_batches(
            self.images,
            epoch_order(len(self.images), self.config.seed, self.epoch),
            batch_size=self.config.batch_size,
            batches=range(self.batch_in_epoch, self.steps_per_epoch),
            world=self.world,
            # Drawn from z_rng, whose state the checkpoint keeps: a resume flips the same.
            flip_rng=self.z_rng if self.config.flip else None,
            memory_format=self.memory_format,
        )

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
