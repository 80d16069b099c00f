"""Fault injection shared by the reliability tests and benchmarks/reliability.py.

Training through the CLI (`python -m facegan train`, as a new program or forked by
launcher.py) is killed with SIGKILL and resumed, and must end bitwise equal to a run that
was never stopped. Bad inputs are
given to the CLI, which must refuse each with exit code 2, an "error:" line naming the
problem, no traceback, and no user file touched. Fuzzing feeds decode_image and load_faces
random and mutated image bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import random
import struct
import subprocess
import tempfile
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from hypothesis import strategies as st
from PIL import Image

from facegan.__main__ import main
from facegan.checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from facegan.data import IMAGE_EXTENSIONS, UnreadableImagesWarning, decode_image, load_faces
from facegan.errors import CheckpointError, DataError
from facegan.history import read_history
from tests.support.launcher import ForkedProcess, Launcher, program

# A run of a few seconds on 2 cores, most of it starting Python and torch. log_every 1 puts
# every finished step in history.jsonl, which is how a kill's lost steps are counted.
TINY_TRAIN = [
    *("--image-size", "16", "--n-images", "64", "--batch-size", "16"),
    *("--z-size", "8", "--conv-dim", "4", "--n-samples", "4", "--log-every", "1"),
    "--no-progress",
]
STEPS_PER_EPOCH = 4  # 64 images in batches of 16
# Checkpoint entries that must match bitwise: all of the state bar the config.
COMPARED = (
    "generator",
    "discriminator",
    "g_optimizer",
    "d_optimizer",
    "fixed_z",
    "z_rng",
    "rng",
    "epoch",
    "batch_in_epoch",
    "step",
    "history",
    "window",
)


def checkpoint_of(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.pt"


def half_written_checkpoint_of(run_dir: Path) -> Path:
    """Where save_atomic writes before its rename."""
    return run_dir / "checkpoints" / "last.pt.tmp"


# Training through the CLI


@dataclass(frozen=True)
class TinyRun:
    """How a tiny run is trained through the CLI: as a new program, or forked by a Launcher."""

    epochs: int = 5
    checkpoint_every: int = 1
    launcher: Launcher | None = None

    def args(self, run_dir: Path, resume: bool) -> list[str]:
        return [
            *("train", *TINY_TRAIN, "--epochs", str(self.epochs)),
            *("--checkpoint-every", str(self.checkpoint_every), "--out", str(run_dir)),
            *(["--resume"] if resume else []),
        ]

    def start(self, run_dir: Path) -> subprocess.Popen | ForkedProcess:
        """Start training: a fresh run, or --resume when run_dir holds a checkpoint."""
        args = self.args(run_dir, resume=checkpoint_of(run_dir).exists())
        return self.launcher.start(args) if self.launcher else program(args)

    def finish(self, run_dir: Path) -> tuple[int, str, str]:
        """Train run_dir to the end, resuming it if it was started: (exit code, out, err)."""
        process = self.start(run_dir)
        out, err = process.communicate(timeout=300)
        return process.returncode, out, err


def file_version(path: Path) -> tuple[int, int] | None:
    """What changes when a file is replaced by a rename: its inode and modification time."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def wait_for_new_checkpoint(
    process: subprocess.Popen | ForkedProcess, run_dir: Path, timeout: float
) -> bool:
    """Wait until the process saves a checkpoint; False if it exits or time runs out first."""
    path = checkpoint_of(run_dir)
    before = file_version(path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if file_version(path) != before:
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.005)
    return False


def sigkill(process: subprocess.Popen | ForkedProcess) -> str:
    """Kill the process outright (SIGKILL); returns its stderr."""
    process.kill()
    return process.communicate(timeout=60)[1]


@dataclass(frozen=True)
class Reference:
    """A run that was never stopped, and how long its launch took to start and to train."""

    run_dir: Path
    startup: float  # seconds from launch to the first checkpoint
    span: float  # seconds from the first checkpoint to the end


def reference_run(run: TinyRun, run_dir: Path) -> Reference:
    """Train run_dir from start to end in one launch, timing it."""
    started = time.monotonic()
    process = run.start(run_dir)
    assert wait_for_new_checkpoint(process, run_dir, timeout=300), "no checkpoint was saved"
    first_save = time.monotonic()
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return Reference(run_dir, first_save - started, time.monotonic() - first_save)


def differences(a: object, b: object, where: str = "") -> list[str]:
    """Where two nested checkpoint values differ; tensors must match bitwise and in dtype."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        same = a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        return [] if same else [where]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where} (keys)"]
        return [d for key in a for d in differences(a[key], b[key], f"{where}/{key}")]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return [f"{where} (length {len(a)} vs {len(b)})"]
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in differences(x, y, f"{where}[{i}]")]
    return [] if type(a) is type(b) and a == b else [where]


def without_timing(rows: list[dict]) -> list[dict]:
    """History rows without images_per_sec, the one wall-clock field."""
    return [{k: v for k, v in row.items() if k != "images_per_sec"} for row in rows]


def comparable_state(path: Path) -> dict:
    state = load_checkpoint(path)
    state["history"] = without_timing(state["history"])
    return {key: state[key] for key in COMPARED}


def run_differences(reference: Path, run_dir: Path) -> list[str]:
    """How a finished run differs from the reference run: checkpoint, history, sample grids."""
    found = differences(
        comparable_state(checkpoint_of(reference)), comparable_state(checkpoint_of(run_dir))
    )
    if without_timing(read_history(reference)) != without_timing(read_history(run_dir)):
        found.append("history.jsonl")
    for grid in sorted((reference / "samples").iterdir()):
        other = run_dir / "samples" / grid.name
        if not (other.exists() and other.read_bytes() == grid.read_bytes()):
            found.append(f"samples/{grid.name}")
    return found


@dataclass
class KillReport:
    """What kill_at_random_moments did and found."""

    kills: int = 0  # SIGKILLs that hit a live training process
    kills_mid_write: int = 0  # ... that left a checkpoint half written
    resumes: int = 0  # launches that continued a killed run with --resume
    checkpoints_intact: int = 0  # kills after which the last checkpoint loaded
    files_lost: int = 0  # checkpoints unreadable, or older than one seen before, after a kill
    most_steps_lost: int = 0  # finished steps missing from the checkpoint, at worst
    runs_finished: int = 0
    runs_matching: int = 0  # finished runs bitwise equal to the reference
    tracebacks: int = 0
    mismatches: list[str] = field(default_factory=list)


def kill_at_random_moments(
    run: TinyRun,
    reference: Reference,
    folder: Path,
    kills: int,
    seed: int,
    startup_share: float = 0.2,
) -> KillReport:
    """SIGKILL training `kills` times, resuming the same run folder after each kill.

    A share of the kills land at a random moment of start-up or resume (up to the
    reference's start-up time after launch); the others a random time up to its training
    span after the launch's first checkpoint, so that they hit training, logging, sampling
    and saving. A run that ends before its kill is compared bitwise with the reference and
    a fresh run folder begun.
    """
    rng = random.Random(seed)
    report = KillReport()
    run_dir, saved_step = folder / "run-0", 0
    while report.kills < kills:
        report.resumes += checkpoint_of(run_dir).exists()
        half_written = file_version(half_written_checkpoint_of(run_dir))
        process = run.start(run_dir)
        in_startup = rng.random() < startup_share
        if in_startup or wait_for_new_checkpoint(process, run_dir, timeout=120):
            delay = rng.uniform(0, reference.startup if in_startup else reference.span)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=delay)
        if process.poll() is None:
            report.tracebacks += "Traceback" in sigkill(process)
            report.kills += 1
            after = file_version(half_written_checkpoint_of(run_dir))
            report.kills_mid_write += after not in (None, half_written)
            saved_step = _check_after_kill(run_dir, saved_step, report)
            continue
        _, err = process.communicate()
        report.tracebacks += "Traceback" in err
        _check_finished(reference.run_dir, run_dir, process.returncode, report)
        run_dir, saved_step = folder / f"run-{report.runs_finished}", 0
    report.resumes += checkpoint_of(run_dir).exists()
    _check_finished(reference.run_dir, run_dir, run.finish(run_dir)[0], report)
    return report


def _check_after_kill(run_dir: Path, saved_step: int, report: KillReport) -> int:
    """Count what a kill cost; returns the step of the checkpoint it left."""
    path = checkpoint_of(run_dir)
    if not path.exists():
        return saved_step  # killed before its first save: nothing was there to lose
    try:
        step = load_checkpoint(path)["step"]
    except CheckpointError:
        report.files_lost += 1
        return saved_step
    report.checkpoints_intact += 1
    report.files_lost += step < saved_step
    # Rows reach history.jsonl before their step's checkpoint is written.
    done = max((row["step"] for row in read_history(run_dir)), default=0)
    report.most_steps_lost = max(report.most_steps_lost, done - step)
    return step


def _check_finished(reference: Path, run_dir: Path, exit_code: int, report: KillReport) -> None:
    report.runs_finished += 1
    found = run_differences(reference, run_dir) if exit_code == 0 else [f"exit code {exit_code}"]
    report.runs_matching += not found
    report.mismatches += [f"{run_dir.name}: {d}" for d in found]


# Bad input


def invoke_in_process(args: list[str]) -> tuple[int, str]:
    """main(args) in this process: (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(args)
        except SystemExit as stop:  # argparse's own errors
            code = stop.code
    return code, err.getvalue()


def invoke_program(args: list[str]) -> tuple[int, str]:
    """`python -m facegan ARGS` as a new program: (exit code, stderr)."""
    process = program(args)
    _, err = process.communicate(timeout=300)
    return process.returncode, err


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file under folder: modification time and content hash."""
    return {
        path.relative_to(folder).as_posix(): (
            path.stat().st_mtime_ns,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def touched_files(before: dict, after: dict) -> list[str]:
    """Files created, removed or changed between two snapshots."""
    return sorted(
        name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
    )


@dataclass(frozen=True)
class BadInput:
    """An input that the CLI must refuse: exit code 2, an error naming it, no traceback."""

    name: str
    make: Callable[[Path], list[str]]  # writes the input into a folder; returns CLI arguments
    message: str  # words the error line must contain
    applies: bool = True  # False where the case cannot arise on this machine


@dataclass
class Refusal:
    """How the CLI answered one bad input."""

    case: BadInput
    exit_code: int
    stderr: str
    touched: list[str]  # files in the input's folder created, removed or changed

    @property
    def problems(self) -> list[str]:
        """What was wrong with the refusal: nothing, if it was right."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        # The error is the last "error: " line and what follows it: one line, or a message
        # that lists several settings on lines of their own.
        starts = [i for i, line in enumerate(lines) if "error: " in line]
        error = "\n".join(lines[starts[-1] :]) if starts else ""
        problems = [f"exit code {self.exit_code}, not 2"] if self.exit_code != 2 else []
        if "Traceback" in self.stderr:
            problems.append("a traceback on stderr")
        if not error or self.case.message not in error:
            last = lines[-1] if lines else ""
            problems.append(f"the error {error or last!r} lacks {self.case.message!r}")
        return problems + [f"{name} was touched" for name in self.touched]


def refuse(case: BadInput, folder: Path, invoke: Callable) -> Refusal:
    """Make the bad input in folder and give it to the CLI through invoke."""
    args = case.make(folder)
    before = snapshot(folder)
    code, err = invoke(args)
    return Refusal(case, code, err, touched_files(before, snapshot(folder)))


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG file made by hand, for headers Pillow will not write (16-bit RGB, huge sizes)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def bomb_png(side: int) -> bytes:
    """A PNG that declares side x side pixels and holds almost nothing: a decompression bomb."""
    return png(side, side, 8, 2, b"\0")


def unreadable_images() -> dict[str, bytes]:
    """Files named as images that cannot be decoded."""
    jpeg = encoded(Image.new("RGB", (64, 64), (200, 40, 40)), "JPEG")
    return {
        "empty.jpg": b"",
        "random.jpg": random.Random(0).randbytes(500),
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "bomb.png": bomb_png(20000),
    }


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def train_args(folder: Path, *extra: str) -> list[str]:
    return ["train", *TINY_TRAIN, "--epochs", "1", "--out", str(folder / "run"), *extra]


def trained_run(folder: Path) -> Path:
    """A real one-epoch run in folder/run, trained through the CLI; returns its checkpoint."""
    code, err = invoke_in_process(train_args(folder))
    assert code == 0, err
    return checkpoint_of(folder / "run")


def sample_args(folder: Path, checkpoint: Path) -> list[str]:
    return ["sample", "--checkpoint", str(checkpoint), "--out", str(folder / "grid.png")]


class CodePayload:
    """Unpickling this runs code that creates `marker`: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return exec, (f"import pathlib; pathlib.Path({self.marker!r}).touch()",)


def write_malicious_checkpoint(path: Path, marker: Path, legacy: bool = False) -> Path:
    """A checkpoint whose loading would run code; legacy: torch's old plain-pickle format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": CHECKPOINT_FORMAT, "generator": CodePayload(marker)}
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path


def _data_case(name: str, make: Callable[[Path], Path], message: str) -> BadInput:
    return BadInput(name, lambda folder: train_args(folder, "--data", str(make(folder))), message)


def _missing(folder: Path) -> Path:
    return folder / "nowhere"


def _empty_folder(folder: Path) -> Path:
    (folder / "faces").mkdir()
    return folder / "faces"


def _folder_without_images(folder: Path) -> Path:
    write(folder / "faces" / "notes.txt", b"hello")
    write(folder / "faces" / "sub" / "anim.gif", encoded(Image.new("RGB", (8, 8)), "GIF"))
    return folder / "faces"


def _not_a_zip(folder: Path) -> Path:
    return write(folder / "faces.zip", b"<html>404 not found</html>")


def _truncated_zip(folder: Path) -> Path:
    members = {f"faces/{i}.png": encoded(Image.new("RGB", (32, 32), (i, 9, 9))) for i in range(3)}
    path = make_zip(folder / "faces.zip", members)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _only_unreadable_images(folder: Path) -> Path:
    for name, content in unreadable_images().items():
        write(folder / "faces" / name, content)
    return folder / "faces"


def _random_checkpoint(folder: Path) -> list[str]:
    path = write(folder / "last.pt", random.Random(1).randbytes(4096))
    return sample_args(folder, path)


def _truncated_checkpoint(folder: Path) -> list[str]:
    path = trained_run(folder)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return sample_args(folder, path)


def _other_architecture_checkpoint(folder: Path) -> list[str]:
    path = trained_run(folder)
    state = load_checkpoint(path)
    state["config"]["conv_dim"] = 8  # the weights stay those of conv_dim 4
    torch.save(state, path)
    return sample_args(folder, path)


def _foreign_checkpoint(folder: Path) -> list[str]:
    path = folder / "resnet.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    return sample_args(folder, path)


def _malicious_checkpoint(folder: Path) -> list[str]:
    # The marker would appear in folder, which refusal_problems watches.
    path = write_malicious_checkpoint(folder / "evil.pt", folder / "payload-ran")
    return sample_args(folder, path)


def _resume_changed(*flags: str) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        trained_run(folder)
        return train_args(folder, "--resume", *flags)

    return make


def _resume_damaged(folder: Path) -> list[str]:
    path = trained_run(folder)
    path.write_bytes(path.read_bytes()[:1000])
    return train_args(folder, "--resume", "--epochs", "2")


def _train_over_a_run(folder: Path) -> list[str]:
    trained_run(folder)
    return train_args(folder)


def _flags(*flags: str) -> Callable[[Path], list[str]]:
    return lambda folder: train_args(folder, *flags)


BAD_INPUTS = (
    _data_case("missing data path", _missing, "does not exist"),
    _data_case("empty folder", _empty_folder, "no images found"),
    _data_case("folder without images", _folder_without_images, "no images found"),
    _data_case("zip that is not a zip", _not_a_zip, "re-download"),
    _data_case("truncated zip", _truncated_zip, "re-download"),
    _data_case("only unreadable images", _only_unreadable_images, "none of the 4 images"),
    BadInput("checkpoint of random bytes", _random_checkpoint, "could not be read"),
    BadInput("truncated checkpoint", _truncated_checkpoint, "could not be read"),
    BadInput("checkpoint of another architecture", _other_architecture_checkpoint, "no generator"),
    BadInput("checkpoint of another program", _foreign_checkpoint, "not a facegan checkpoint"),
    BadInput("checkpoint that runs code", _malicious_checkpoint, "could not be read"),
    BadInput("missing checkpoint", lambda f: sample_args(f, f / "no.pt"), "does not exist"),
    BadInput("resume, another image size", _resume_changed("--image-size", "32"), "image_size: "),
    BadInput("resume, another conv_dim", _resume_changed("--conv-dim", "8"), "conv_dim: "),
    BadInput("resume, no run yet", _flags("--resume"), "does not exist: train first"),
    BadInput("resume, damaged checkpoint", _resume_damaged, "could not be read"),
    BadInput("train over a run", _train_over_a_run, "already holds a run"),
    BadInput("image size 48", _flags("--image-size", "48"), "power of two"),
    BadInput("image size 0", _flags("--image-size", "0"), "power of two"),
    BadInput("batch size 0", _flags("--batch-size", "0"), "batch_size must be a positive"),
    BadInput("batch size -16", _flags("--batch-size", "-16"), "batch_size must be a positive"),
    BadInput("batch over the data", _flags("--batch-size", "128"), "larger than the dataset"),
    BadInput("epochs 0", _flags("--epochs", "0"), "epochs must be a positive"),
    BadInput("epochs -3", _flags("--epochs", "-3"), "epochs must be a positive"),
    BadInput("epochs not a number", _flags("--epochs", "two"), "invalid int value"),
    BadInput("n_images 0", _flags("--n-images", "0"), "n_images must be a positive"),
    BadInput("checkpoint every -1", _flags("--checkpoint-every", "-1"), "checkpoint_every must"),
    BadInput("unknown device", _flags("--device", "tpu"), "device 'tpu' is unknown"),
    BadInput(
        "cuda without a GPU",
        _flags("--device", "cuda"),
        "no CUDA GPU",
        applies=not torch.cuda.is_available(),
    ),
    BadInput("unknown precision", _flags("--precision", "fp8"), "precision 'fp8' is unknown"),
    BadInput("sample no faces", lambda f: ["sample", "--checkpoint", "x", "--n", "0"], "--n must"),
)


# Fuzzing


def seed_images() -> list[bytes]:
    """Real JPEG and PNG files of a face-like picture, for mutation."""
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8))
    return [encoded(picture, "JPEG"), encoded(picture, "PNG"), encoded(picture.convert("L"))]


def mutate(base: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    """base with bytes overwritten at positions (modulo its length), then maybe cut short."""
    data = bytearray(base)
    for position, value in edits:
        data[position % len(data)] = value
    return bytes(data[:cut])


SEED_IMAGES = seed_images()
random_bytes = st.binary(max_size=2048)
mutated_images = st.builds(
    mutate,
    st.sampled_from(SEED_IMAGES),
    st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 255)), max_size=8),
    st.none() | st.integers(0, 2**12),
)
file_names = st.tuples(
    st.text("abcxyz_-0123", min_size=1, max_size=6),
    st.sampled_from([*IMAGE_EXTENSIONS, ".JPG", ".Png", ".txt", ""]),
).map("".join)
# Intact images among the damaged ones, so that many folders load and some skip files.
folders = st.dictionaries(
    file_names, st.sampled_from(SEED_IMAGES) | mutated_images | random_bytes, max_size=6
)


def check_decode(data: bytes, image_size: int = 16) -> str:
    """decode_image returns uint8 [S, S, 3] or raises DataError; "decoded" or "refused"."""
    try:
        image = decode_image(data, image_size)
    except DataError:
        return "refused"
    assert isinstance(image, np.ndarray), type(image)
    assert image.dtype == np.uint8 and image.shape == (image_size, image_size, 3), image.shape
    return "decoded"


def check_load_folder(files: dict[str, bytes]) -> str:
    """load_faces over a folder of these files returns faces, warning once if it skipped some,
    or raises DataError; "loaded" or "refused"."""
    images = [name for name in files if name.lower().endswith(IMAGE_EXTENSIONS)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "faces"
        for name, content in files.items():
            write(folder / name, content)
        folder.mkdir(exist_ok=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                faces = load_faces(folder, 16, cache_dir=Path(tmp) / "cache", progress=False)
            except DataError:
                return "refused"
        assert [w.category for w in caught] == [UnreadableImagesWarning] * bool(faces.skipped)
        assert faces.images.dtype == np.uint8 and faces.images.shape[1:] == (16, 16, 3)
        assert len(faces) + len(faces.skipped) == len(images)
    return "loaded"
