"""Resume: what a Trainer's checkpoint holds, which settings a resume may change, and the restore.

A resumed run is bitwise the run that was never stopped (on the CPU), so the checkpoint holds
everything a step depends on: the networks, both optimizers, the z generator, the global RNGs,
the counters and the history. A resume refuses settings its checkpoint cannot take, and others
that change what a step computes unless they are allowed; allowed changes are recorded.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from facegan.checkpoint import (
    ARCHITECTURE_FIELDS,
    CHECKPOINT_FORMAT,
    check_models,
    global_rng_state,
    load_checkpoint,
    model_record,
    set_global_rng_state,
    write_text_atomic,
)
from facegan.config import TrainConfig
from facegan.errors import CheckpointError
from facegan.history import write_history
from facegan.runtime import resumed_precision

if TYPE_CHECKING:  # for annotations alone: the Trainer imports this module
    from facegan.trainer import Trainer

# Settings that fix the shape of the networks, and of what a checkpoint holds besides them: a
# resume can never change them, not even on purpose.
FIXED_ON_RESUME = (*ARCHITECTURE_FIELDS, "d_norm", "n_samples")
# Settings a resume may change freely: how long to train, how often to measure, log and save,
# and where and how fast to compute. Every other setting changes what a step computes, so a
# resume that changes it needs allow_changes (--allow-changes), and the change is recorded.
FREE_ON_RESUME = (
    "epochs",
    "eval_every",
    "eval_n",
    "log_every",
    "checkpoint_every",
    "device",
    "threads",
    "channels_last",
    "compile",
    "dist_timeout",
)
# What a run that did not record a setting trained with, where today's default differs.
LEGACY_DEFAULTS = {"ema": 0.0}


def trainer_state(trainer: Trainer) -> dict:
    """Everything that a resume of trainer needs, as tensors and plain data only.

    There is no gradient scaler to save: bf16 autocast needs none (unlike fp16).
    """
    return {
        "format": CHECKPOINT_FORMAT,
        "config": trainer.recorded_config(),
        "models": model_record(trainer.discriminator, trainer.generator),
        "generator": trainer.generator.state_dict(),
        "ema_generator": trainer.ema.model.state_dict() if trainer.ema else None,
        "discriminator": trainer.discriminator.state_dict(),
        "g_optimizer": trainer.g_optimizer.state_dict(),
        "d_optimizer": trainer.d_optimizer.state_dict(),
        "fixed_z": trainer.fixed_z,
        "z_rng": trainer.z_rng.get_state(),
        "rng": global_rng_state(),
        "world_size": trainer.world.size,
        "epoch": trainer.epoch,
        "batch_in_epoch": trainer.batch_in_epoch,
        "step": trainer.step,
        # The rows themselves: history.jsonl may be cut short or run ahead by a crash.
        "history": trainer.history,
        "window": [{k: v.cpu() for k, v in stats.items()} for stats in trainer.window],
    }


def restore_trainer(trainer: Trainer, allow_changes: bool = False) -> None:
    """Load the run folder's last checkpoint into trainer, as Trainer.resume describes.

    Settings are refused as check_resume says. Changes that needed allow_changes join the
    history as a "change" row; history.jsonl is rewritten to match the checkpoint, and
    config.json to hold the new settings if any changed.
    """
    path = trainer.checkpoint_path
    state = load_checkpoint(path)  # on every rank: DDP shares no Adam state
    check_models(state, trainer.discriminator, trainer.generator, path)
    trainer.world.check_resume(state, path)
    changes = setting_changes(state["config"], asdict(trainer.config))
    check_resume(trainer.run_dir, changes, allow_changes)
    config = trainer.config
    recorded = state["config"].get("precision", "auto")
    trainer.amp_dtype, note = resumed_precision(recorded, config.precision, trainer.device)
    if note:
        print(note)
    trainer.generator.load_state_dict(state["generator"])
    if trainer.ema:
        trainer.ema.model.load_state_dict(state["ema_generator"])
    trainer.discriminator.load_state_dict(state["discriminator"])
    trainer.g_optimizer.load_state_dict(state["g_optimizer"])
    trainer.d_optimizer.load_state_dict(state["d_optimizer"])
    for optimizer in (trainer.g_optimizer, trainer.d_optimizer):
        for group in optimizer.param_groups:  # loading restored the checkpoint's own
            group["lr"], group["betas"] = config.lr, (config.beta1, config.beta2)
    trainer.fixed_z = state["fixed_z"]
    trainer.z_rng.set_state(state["z_rng"])
    set_global_rng_state(trainer.world.own_rng_state(state))
    trainer.epoch, trainer.step = state["epoch"], state["step"]
    # The images of this epoch already trained on, in batches of this run's size.
    seen = state["batch_in_epoch"] * state["config"]["batch_size"]
    trainer.batch_in_epoch = min(seen // config.batch_size, trainer.steps_per_epoch)
    trainer.window = [{k: v.to(trainer.device) for k, v in s.items()} for s in state["window"]]
    trainer.history = state["history"]
    allowed = {name: change for name, change in changes.items() if name not in FREE_ON_RESUME}
    if allowed:  # free changes leave the history as an unbroken run's
        trainer.history.append(
            {"kind": "change", "epoch": trainer.epoch, "step": trainer.step, "changes": allowed}
        )
    if trainer.world.is_main:
        write_history(trainer.run_dir, trainer.history)
    if changes:
        write_config(trainer)


def write_config(trainer: Trainer) -> None:
    """Write the run's config.json: trainer.recorded_config(), by rank 0 alone."""
    if not trainer.world.is_main:  # one writer of the run folder
        return
    text = json.dumps(trainer.recorded_config(), indent=2)
    write_text_atomic(trainer.run_dir / "config.json", text, checkpoint=trainer.checkpoint_path)


def setting_changes(saved: dict, now: dict) -> dict[str, list]:
    """The settings in which now differs from a run's recorded config: name -> [old, new].

    The run folder (out) is where the run is, not how it trains. A setting an older run did
    not record counts as its default then. Precision "auto" keeps the precision the run
    recorded, so only an explicit other precision is a change.
    """
    recorded = asdict(TrainConfig()) | LEGACY_DEFAULTS | saved
    changes = {}
    for name, new in now.items():
        old = recorded.get(name)
        if name == "out" or (name == "precision" and "auto" in (old, new)):
            continue
        if old != new:
            changes[name] = [old, new]
    return changes


def check_resume(run_dir: Path, changes: dict[str, list], allow_changes: bool = False) -> None:
    """Raise CheckpointError unless a resume may go on with these changes to its settings.

    FREE_ON_RESUME settings may change; the shape of what the checkpoint holds (the networks,
    whether there is an EMA, the fixed-z grid) never; any other change only when allowed.
    """
    fixed = [
        name
        for name, (old, new) in changes.items()
        if name in FIXED_ON_RESUME or (name == "ema" and bool(old) != bool(new))
    ]
    guarded = [name for name in changes if name not in FREE_ON_RESUME]
    if not fixed and (allow_changes or not guarded):
        return
    lines = [
        f"  {name}: {changes[name][0]!r} -> {changes[name][1]!r}"
        + (" (fixed by the checkpoint)" if name in fixed else "")
        for name in guarded
    ]
    if fixed:
        raise CheckpointError(
            f"cannot resume {run_dir}: its checkpoint cannot take these settings:\n"
            + "\n".join(lines)
            + "\nResume with the run's own settings (its config.json), or start a new run "
            "in another folder (--out; OUT in the notebook)."
        )
    raise CheckpointError(
        f"cannot resume {run_dir} with other settings than it trained with:\n"
        + "\n".join(lines)
        + "\nStart a new run in another folder (--out; OUT in the notebook), or continue "
        "with these changes on purpose with --allow-changes (Trainer.resume(allow_changes="
        "True)), which records them in history.jsonl."
    )
