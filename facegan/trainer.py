"""Trainer: epochs, logging, sample grids, evaluation, checkpoints, stop signals and resume.

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
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from facegan.checkpoint import (
    CHECKPOINT_FORMAT,
    append_history,
    global_rng_state,
    load_checkpoint,
    resume_differences,
    save_atomic,
    set_global_rng_state,
    write_history,
    write_text_atomic,
)
from facegan.config import TrainConfig, check_positive
from facegan.data import FaceDataset, epoch_order, load_faces
from facegan.ema import EMA
from facegan.errors import CheckpointError, ConfigError, FaceGanError
from facegan.evaluate import (
    EVAL_SEED_OFFSET,
    FID_SKIPPED,
    Evaluator,
    best_evaluation,
    draw_faces,
    is_better,
    training_metrics,
)
from facegan.images import save_grid, to_float
from facegan.models import Generator, build_models, sample_images
from facegan.runtime import (
    check_compiler,
    resolve_channels_last,
    resolve_device,
    resolve_precision,
    resolve_threads,
)
from facegan.step import make_optimizers, train_step


class TrainingDiverged(FaceGanError):
    """A loss became NaN or infinite."""


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
        self.ema = EMA(self.generator, config.ema) if config.ema else None
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
        # State dicts, sampling and the EMA use the plain modules, so checkpoint keys carry
        # no "_orig_mod." prefix and load with or without compile.
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
    def ema_generator(self) -> Generator:
        """The generator that draws the run's pictures: the EMA of G's weights when ema > 0.

        With ema 0 there is no averaging, and that generator is G itself.
        """
        return self.ema.model if self.ema else self.generator

    def state_dict(self) -> dict:
        """Everything that a resume needs, as tensors and plain data only.

        There is no gradient scaler to save: bf16 autocast needs none (unlike fp16).
        """
        return {
            "format": CHECKPOINT_FORMAT,
            "config": asdict(self.config),
            "generator": self.generator.state_dict(),
            "ema_generator": self.ema.model.state_dict() if self.ema else None,
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
        changed = resume_differences(state["config"], asdict(self.config))
        if changed:
            raise CheckpointError(
                f"cannot resume {self.checkpoint_path}: the architecture differs ("
                + "; ".join(changed)
                + "). Resume with the original settings or use a new --out."
            )
        self.generator.load_state_dict(state["generator"])
        if self.ema:
            self.ema.model.load_state_dict(state["ema_generator"])
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
        write_text_atomic(self.run_dir / "config.json", json.dumps(asdict(self.config), indent=2))
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
                    sample_images(self.ema_generator, self.fixed_z),
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
        """Score eval_n faces of the EMA generator; the row joins the history."""
        config = self.config
        if self.evaluator is None:
            self.evaluator = Evaluator(
                np.asarray(self.dataset.images[: config.eval_n]),
                synthetic=self.dataset.attributes is not None,
                reference_key=self.dataset.key,
                metrics=training_metrics(self.device),
                progress=progress,
            )
        faces = draw_faces(self.ema_generator, config.eval_n, config.seed + EVAL_SEED_OFFSET)
        row = {"kind": "eval", "epoch": self.epoch, "step": self.step, **self.evaluator(faces)}
        if "fid" not in self.evaluator.metrics:
            row.setdefault("fid_unavailable", FID_SKIPPED)
        self._append(row)
        return row

    def _append(self, row: dict) -> None:
        self.history.append(row)
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
            smooth=config.smooth,
            amp_dtype=self.amp_dtype,
            loss=config.loss,
            gp_weight=config.gp_weight,
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
