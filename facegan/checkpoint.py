"""Checkpoints and the run folder's records: atomic writes, the format, random states, history.

A checkpoint holds state dicts, tensors and plain data only, so that it loads with
torch.load(weights_only=True) and no code in it can run. Every file of a run folder is written
to a temporary file and renamed into place, so a crash leaves the old file or the new, whole.
"""

from __future__ import annotations

import errno
import io
import json
import os
import random
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import IO

import numpy as np
import torch
from torch import nn

try:
    import fcntl
except ModuleNotFoundError:  # Windows has no flock: runs there are not locked
    fcntl = None

from facegan.config import TrainConfig
from facegan.errors import CheckpointError, FaceGanError
from facegan.models import Discriminator, Generator

# Format 2 added the global RNG states and the history rows. Format 3 renamed the history keys
# of the Haar measure; format 2 checkpoints are converted as they load.
CHECKPOINT_FORMAT = 3
READABLE_FORMATS = (2, CHECKPOINT_FORMAT)
RENAMED_HISTORY_KEYS = {
    "face_rate": "faces_found",
    "face_rate_real": "faces_found_real",
    "face_rate_ratio": "faces_found_ratio",
}
# Fields that fix the shape of the networks, and of what a checkpoint holds besides them: a
# resume can never change them, not even on purpose.
ARCHITECTURE_FIELDS = ("image_size", "z_size", "conv_dim")
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
# errno values that mean "no room": a full disk, a full quota, a file-size limit (ulimit -f).
NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class RunInUseError(FaceGanError):
    """Another process is training in the run folder."""


class NoRoomError(CheckpointError):
    """The disk (or quota, or file-size limit) has no room for a file of the run."""


def save_atomic(obj: object, path: Path, checkpoint: Path | None = None) -> None:
    """torch.save obj to path by rename; checkpoint (default: path) is named if there is no room.

    The bytes are made in memory first, so that a full disk shows up as Python's OSError
    with its errno, not as torch's error from inside its zip writer.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getbuffer()
    write_atomic(
        path, lambda temp: temp.write_bytes(data), checkpoint=checkpoint or path, needs=len(data)
    )


def write_atomic(
    path: Path,
    write: Callable[[Path], object],
    *,
    checkpoint: Path | None = None,
    needs: int | None = None,
    temp: Path | None = None,
) -> None:
    """Write path by rename: write(temp) fills a temporary file, which then replaces path.

    A crash leaves the old file or the new, whole. On any failure the temporary file is
    removed and a CheckpointError names the cause; no room on the disk raises NoRoomError,
    which names the folder, the room a checkpoint needs (needs bytes, else checkpoint's size)
    and checkpoint, the run's last good checkpoint, which is kept.
    """
    temp = temp or path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(temp)
        with open(temp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(temp, path)
    except OSError as err:
        temp.unlink(missing_ok=True)
        raise write_error(path, err, checkpoint=checkpoint, needs=needs) from err
    _fsync_folder(path.parent)


def write_error(
    path: Path, err: OSError, *, checkpoint: Path | None = None, needs: int | None = None
) -> CheckpointError:
    """The error to raise when writing a file of a run failed with err: it names the cause."""
    if checkpoint is None:
        kept = "no checkpoint is affected"
    elif checkpoint.is_file():
        kept = f"the last good checkpoint, {checkpoint}, is kept"
        needs = needs or checkpoint.stat().st_size
    else:
        kept = "no checkpoint was saved yet"
    cause = err.strerror or str(err)
    if err.errno in NO_ROOM:
        room = f"; a checkpoint of this run needs about {_megabytes(needs)}" if needs else ""
        return NoRoomError(
            f"no room to write {path} ({cause}): the disk holding {path.parent} is full"
            f"{room}, and {kept}. Free some space (or write to another --out), then continue "
            "with --resume."
        )
    name = f" ({errno.errorcode[err.errno]})" if err.errno in errno.errorcode else ""
    return CheckpointError(f"could not write {path}: {cause}{name}; {kept}.")


def _megabytes(size: int) -> str:
    return f"{max(size / 2**20, 0.1):.1f} MB"


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


def write_text_atomic(path: Path, text: str, checkpoint: Path | None = None) -> None:
    """Write a text file by rename (write_atomic); checkpoint is named if the disk is full."""
    write_atomic(path, lambda temp: temp.write_text(text), checkpoint=checkpoint)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint safely (weights_only: no code in it can run), in the current format."""
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
    if found not in READABLE_FORMATS:
        raise CheckpointError(
            f"{path} is not a facegan checkpoint of format "
            f"{' or '.join(map(str, READABLE_FORMATS))} (found format {found!r}): it is "
            "another file, or was written by another version of facegan."
        )
    if found == 2:
        state["history"] = [_renamed_keys(row) for row in state.get("history", [])]
        state["format"] = CHECKPOINT_FORMAT
    return state


def _renamed_keys(row: dict) -> dict:
    """A format-2 history row with format 3's names, keys and the main_metric value alike."""
    row = {RENAMED_HISTORY_KEYS.get(key, key): value for key, value in row.items()}
    if "main_metric" in row:
        row["main_metric"] = RENAMED_HISTORY_KEYS.get(row["main_metric"], row["main_metric"])
    return row


def generator_from_checkpoint(path: str | os.PathLike, ema: bool = True) -> Generator:
    """The trained generator of a checkpoint, in eval mode, on the CPU.

    With ema (the default) it is the EMA of G's weights when the run kept one (ema > 0).
    """
    return generator_from_state(load_checkpoint(path), path, ema)


def generator_from_state(state: dict, path: str | os.PathLike, ema: bool = True) -> Generator:
    """generator_from_checkpoint for a checkpoint already read by load_checkpoint from path."""
    models = state.get("models") or FACEGAN_MODELS
    if models != FACEGAN_MODELS:
        raise CheckpointError(
            f"checkpoint {path} holds networks defined in {_where(models)} (class "
            f"{models.get('generator')}), which sample and eval cannot rebuild: run that "
            "definition, load the weights into it with generator.load_state_dict(torch.load("
            "PATH, weights_only=True)['generator']) and draw with facegan.models.sample_images."
        )
    try:
        config = {name: state["config"][name] for name in ARCHITECTURE_FIELDS}
        generator = Generator(config["z_size"], config["conv_dim"], config["image_size"])
        ema_state = state.get("ema_generator") if ema else None
        generator.load_state_dict(ema_state or state["generator"])
    except (KeyError, TypeError, RuntimeError, FaceGanError) as err:
        # A hand-edited or foreign file: say so instead of showing load_state_dict's traceback.
        raise CheckpointError(
            f"checkpoint {path} holds no generator that fits its recorded architecture "
            f"({_describe(state.get('config'))}): {type(err).__name__}. It is damaged, or "
            "was not written by facegan."
        ) from err
    return generator.eval()


def model_record(discriminator: nn.Module, generator: nn.Module) -> dict[str, str]:
    """Where a run's networks are defined, for its checkpoints: the class names and a source.

    The source is "facegan" for facegan's own classes, "notebook" for classes defined in a
    notebook (or a script run as __main__), else the module that defines them.
    """
    sources = [_source(type(model)) for model in (generator, discriminator)]
    return {
        "source": next((source for source in sources if source != "facegan"), "facegan"),
        "discriminator": type(discriminator).__name__,
        "generator": type(generator).__name__,
    }


# The record of facegan's own networks, which checkpoints written before the record imply.
FACEGAN_MODELS = {"source": "facegan", "discriminator": "Discriminator", "generator": "Generator"}


def _source(cls: type) -> str:
    if cls in (Discriminator, Generator):
        return "facegan"
    return "notebook" if cls.__module__ == "__main__" else cls.__module__


def _where(models: dict) -> str:
    source = models.get("source")
    return {"notebook": "the notebook", "facegan": "facegan"}.get(source, f"module {source}")


def check_models(state: dict, discriminator: nn.Module, generator: nn.Module, path: Path) -> None:
    """Raise CheckpointError unless the checkpoint's networks are of these networks' classes."""
    saved, now = state.get("models") or FACEGAN_MODELS, model_record(discriminator, generator)
    if saved != now:
        raise CheckpointError(
            f"cannot resume {path}: it holds a {saved['generator']} and a "
            f"{saved['discriminator']} defined in {_where(saved)}, but this run has a "
            f"{now['generator']} and a {now['discriminator']} from {_where(now)}. Resume with "
            "the networks that trained it (the same notebook), or use a new --out."
        )


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


class RunLock:
    """An exclusive lock on a run folder, held while one process trains in it.

    It is flock on the folder's .lock file, which holds the holder's PID for the refusal
    message. The kernel drops a flock when its process ends, however it ends, so a killed
    run leaves no stale lock. The holder removes the file before unlocking it; whoever
    locks a file that was meanwhile removed tries again on a new one.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / ".lock"
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> None:
        """Take the lock, making the folder if need be; RunInUseError if another run holds it."""
        if fcntl is None:
            return
        while not self.held:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                # Appending never erases a holder's PID; the file stays open while held.
                file = open(self.path, "a+")  # noqa: SIM115
            except OSError as err:
                raise write_error(self.path, err) from err
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                file.seek(0)
                holder = file.read().strip()
                file.close()
                raise RunInUseError(
                    f"{self.run_dir} is in use by another run (process "
                    f"{holder or 'unknown'}): wait for it to end or stop it, or train "
                    "in another folder (--out)."
                ) from None
            if self._same_file(file):
                self._file = file
            else:
                file.close()
        try:
            self._file.truncate(0)
            self._file.write(f"{os.getpid()}\n")
            self._file.flush()
        except OSError as err:
            self.release()
            raise write_error(self.path, err) from err

    def _same_file(self, file: IO[str]) -> bool:
        """Whether file is still the one at self.path (the last holder did not remove it)."""
        try:
            return os.stat(self.path).st_ino == os.fstat(file.fileno()).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        """Remove the lock file and unlock it; nothing if the lock is not held."""
        if self._file is not None:
            self.path.unlink(missing_ok=True)
            self._file.close()
            self._file = None


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


def read_history(run_dir: str | os.PathLike) -> list[dict]:
    """The rows of a run's history.jsonl (empty if there is none yet)."""
    path = Path(run_dir) / "history.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_history(run_dir: str | os.PathLike, rows: list[dict]) -> None:
    """Replace a run's history.jsonl with rows."""
    path = Path(run_dir) / "history.jsonl"
    text = "".join(json.dumps(row) + "\n" for row in rows)
    write_text_atomic(path, text, checkpoint=Path(run_dir) / "checkpoints" / "last.pt")


def append_history(run_dir: str | os.PathLike, row: dict) -> None:
    """Add one row to a run's history.jsonl; a failed write leaves the file as it was."""
    path = Path(run_dir) / "history.jsonl"
    line = (json.dumps(row) + "\n").encode()
    try:
        # Unbuffered, so that a failure shows here and not again when the file closes.
        with open(path, "ab", buffering=0) as f:
            size = f.seek(0, os.SEEK_END)
            try:
                written = 0
                while written < len(line):
                    written += f.write(line[written:])
            except OSError:
                f.truncate(size)  # no half row for the next reader
                raise
    except OSError as err:
        last = Path(run_dir) / "checkpoints" / "last.pt"
        raise write_error(path, err, checkpoint=last) from err


def training_rows(history: list[dict]) -> list[dict]:
    """The training rows of a history (losses, D(x), D(G(z))), without evaluations or changes."""
    return [row for row in history if row.get("kind", "train") == "train"]


def last_training_row(history: list[dict]) -> dict | None:
    """The last training row of a history; None before the first is logged."""
    rows = training_rows(history)
    return rows[-1] if rows else None
