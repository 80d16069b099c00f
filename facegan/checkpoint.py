"""Checkpoints and the run folder's records: atomic writes, the format, random states, history.

A checkpoint holds state dicts, tensors and plain data only, so that it loads with
torch.load(weights_only=True) and no code in it can run. Every file of a run folder is written
to a temporary file and renamed into place, so a crash leaves the old file or the new, whole.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch

from facegan.errors import CheckpointError, FaceGanError
from facegan.models import Generator

# Format 2 added the global RNG states and the history rows. Format 3 renamed the history keys
# of the Haar measure; format 2 checkpoints are converted as they load.
CHECKPOINT_FORMAT = 3
READABLE_FORMATS = (2, CHECKPOINT_FORMAT)
RENAMED_HISTORY_KEYS = {
    "face_rate": "faces_found",
    "face_rate_real": "faces_found_real",
    "face_rate_ratio": "faces_found_ratio",
}
# Fields that fix the shape of the generator, and of what a checkpoint holds besides it:
# a resume must not change them.
ARCHITECTURE_FIELDS = ("image_size", "z_size", "conv_dim")
RESUME_FIELDS = (*ARCHITECTURE_FIELDS, "d_norm", "ema")


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


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file by rename, so that a crash leaves the old file or the new, whole."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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


def resume_differences(saved: dict, now: dict) -> list[str]:
    """The RESUME_FIELDS on which two configs (as dicts) differ, as "name: checkpoint a, now b"."""
    before, after = _resume_view(saved), _resume_view(now)
    return [
        f"{name}: checkpoint {before[name]!r}, now {after[name]!r}"
        for name in RESUME_FIELDS
        if before[name] != after[name]
    ]


def _resume_view(config: dict) -> dict:
    """The RESUME_FIELDS of a config, with the defaults of fields older runs did not record.

    Only whether the EMA is on matters to a resume, not its decay.
    """
    view = {name: config.get(name) for name in ARCHITECTURE_FIELDS}
    view["d_norm"] = config.get("d_norm", "batch")
    view["ema"] = "on" if config.get("ema", 0.0) else "off"
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
    write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


def append_history(run_dir: str | os.PathLike, row: dict) -> None:
    """Add one row to a run's history.jsonl."""
    with open(Path(run_dir) / "history.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
