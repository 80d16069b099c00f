"""Checkpoints: atomic writes, the format and its conversion, the networks' record, random states.

A checkpoint holds state dicts, tensors and plain data only, so that it loads with
torch.load(weights_only=True) and no code in it can run. Every file of a run folder is written
to a temporary file and renamed into place, so a crash leaves the old file or the new, whole.
"""

from __future__ import annotations

import errno
import io
import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

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
# The settings that fix the shape of the networks: a checkpoint's generator is rebuilt from them.
ARCHITECTURE_FIELDS = ("image_size", "z_size", "conv_dim")
# errno values that mean "no room": a full disk, a full quota, a file-size limit (ulimit -f).
NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


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
