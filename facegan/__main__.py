"""Command line: python -m facegan train | sample | eval | report | data.

A FaceGanError is printed as one line and the exit code is 2, with no traceback.
Ctrl-C or SIGTERM during training saves a checkpoint and exits 0 (continue with --resume);
a second Ctrl-C, or one before training starts, stops at once with exit code 130.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import warnings
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import get_type_hints

import numpy as np
import torch

from facegan import distributed
from facegan.checkpoint import generator_from_checkpoint, generator_from_state, load_checkpoint
from facegan.config import TrainConfig
from facegan.data import load_faces
from facegan.errors import ConfigError, FaceGanError
from facegan.evaluate import METRICS, Evaluator, draw_faces
from facegan.history import last_training_row
from facegan.images import save_grid
from facegan.trainer import Trainer


def _add_train(commands: argparse._SubParsersAction) -> None:
    """train's flags: TrainConfig's fields with dashes, typed, with their help and choices."""
    parser = commands.add_parser("train", help="train a DCGAN; writes a run folder")
    hints = get_type_hints(TrainConfig)
    for setting in fields(TrainConfig):
        flag, help_text = "--" + setting.name.replace("_", "-"), setting.metadata["help"]
        kind = hints[setting.name]
        if kind is bool:  # a switch, off unless given
            parser.add_argument(flag, action="store_true", help=help_text)
            continue
        if isinstance(kind, types.UnionType):  # int | None: a number, or left unset
            (kind,) = (arg for arg in kind.__args__ if arg is not type(None))
        choices = setting.metadata.get("choices")
        if setting.default is not None:
            help_text += f" (default: {setting.default})"
        parser.add_argument(
            flag,
            type=kind,
            default=setting.default,
            # Shown, not enforced here: TrainConfig.validate refuses others with a clear message.
            metavar="{" + ",".join(map(str, choices)) + "}" if choices else None,
            help=help_text,
        )
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument(
        "--allow-changes",
        action="store_true",
        help="with --resume: take settings that differ from the run's own (data, batch size, "
        "lr, ...) and record the change in its history.jsonl; see docs/cli.md",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _add_sample(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("sample", help="draw a grid of faces from a checkpoint")
    parser.add_argument("--checkpoint", required=True, help="runs/NAME/checkpoints/last.pt")
    parser.add_argument("--n", type=int, default=64, help="how many faces (default: 64)")
    parser.add_argument("--out", default="samples.png", help="PNG to write")
    parser.add_argument("--seed", type=int, default=0, help="seed for z (default: 0)")


def _add_report(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("report", help="run the notebook and export the HTML report")
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a notebook parameter, e.g. -p EPOCHS 5 (repeatable)",
    )
    parser.add_argument("--out-dir", default="reports", help="where the report goes")
    parser.add_argument(
        "--notebook",
        help="the notebook to run (default: dlnd_face_generation.ipynb); a learner's: "
        "dlnd_face_generation_starter.ipynb",
    )


def _add_eval(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("eval", help="measure a checkpoint's faces against real ones")
    parser.add_argument("--checkpoint", required=True, help="runs/NAME/checkpoints/last.pt")
    parser.add_argument(
        "--data", help="the real faces to compare with (default: the run's own data)"
    )
    parser.add_argument("--n", type=int, default=10000, help="faces to draw (default: 10000)")
    parser.add_argument(
        "--metrics",
        default=",".join(METRICS),
        help=f"comma-separated, from {', '.join(METRICS)} (default: all)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for z (default: 0)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def _add_data(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("data", help="fetch a data set into data/")
    parser.add_argument("action", choices=["download"])
    parser.add_argument("dataset", choices=["celeba"])
    parser.add_argument("--data-dir", default="data", help="where it goes (default: data)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m facegan", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train(commands)
    _add_sample(commands)
    _add_eval(commands)
    _add_report(commands)
    _add_data(commands)
    return parser


def run_train(args: argparse.Namespace) -> None:
    config = TrainConfig(
        **{setting.name: getattr(args, setting.name) for setting in fields(TrainConfig)}
    )
    if args.allow_changes and not args.resume:
        raise ConfigError("--allow-changes only applies to a resume: add --resume, or drop it.")
    config.validate()  # before any data is decoded
    dataset = load_faces(
        config.data, config.image_size, config.n_images, config.seed, progress=not args.no_progress
    )
    try:
        trainer = Trainer(config, dataset)
        if args.resume:
            trainer.resume(allow_changes=args.allow_changes)
        last = last_training_row(trainer.fit(progress=not args.no_progress))
    finally:
        distributed.leave()  # under torchrun; a plain run joined no process group
    if not trainer.world.is_main:  # rank 0 speaks for the run
        return
    if last:
        print(
            f"step {last['step']}: d_loss {last['d_loss']:.3f}, g_loss {last['g_loss']:.3f}, "
            f"D(x) {last['d_real']:.2f}, D(G(z)) {last['d_fake']:.2f}"
        )
    print(f"run folder: {trainer.run_dir}")


def run_sample(args: argparse.Namespace) -> None:
    if args.n < 1:
        raise FaceGanError(f"--n must be at least 1, got {args.n}.")
    generator = generator_from_checkpoint(args.checkpoint)
    z = torch.randn(args.n, generator.z_size, generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        save_grid(generator(z), args.out)
    print(f"wrote {args.n} faces to {args.out}")


def run_eval(args: argparse.Namespace) -> None:
    if args.n < 2:
        raise FaceGanError(f"--n must be at least 2, got {args.n}.")
    metrics = [name.strip() for name in args.metrics.split(",") if name.strip()]
    state = load_checkpoint(args.checkpoint)
    generator = generator_from_state(state, args.checkpoint)  # checks the recorded config too
    config = state["config"]
    data = args.data or config["data"]
    progress = not args.no_progress
    real = load_faces(data, generator.image_size, args.n, config["seed"], progress=progress)
    evaluator = Evaluator(
        np.asarray(real.images),
        synthetic=real.attributes is not None,
        reference_key=real.key,
        metrics=metrics,
        progress=progress,
    )
    result = evaluator(draw_faces(generator, args.n, args.seed))
    width = max(map(len, result))
    for name, value in result.items():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"{name:<{width}}  {shown}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


def run_report(args: argparse.Namespace) -> None:
    from facegan.report import make_report  # the notebook tooling is only needed here

    path = make_report(dict(args.parameter), args.out_dir, args.notebook)
    print(f"report: {path}")


def run_data(args: argparse.Namespace) -> None:
    from facegan.download import download_celeba

    with warnings.catch_warnings():
        # A failed source or an unverified copy is news for the user, not a code location.
        warnings.showwarning = lambda message, *_: print(f"warning: {message}", file=sys.stderr)
        path = download_celeba(args.data_dir, progress=not args.no_progress)
    use = "celeba" if Path(args.data_dir) == Path("data") else str(path)
    print(f"CelebA: {path} (train on it with --data {use})")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "train": run_train,
        "sample": run_sample,
        "eval": run_eval,
        "report": run_report,
        "data": run_data,
    }
    try:
        handlers[args.command](args)
    except FaceGanError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Training checkpoints and partial downloads are written by rename, so both stay whole.
        print(
            "error: interrupted; the last checkpoint and any partial download are intact.",
            file=sys.stderr,
        )
        return 130  # the shell's code for a process stopped by SIGINT
    return 0


if __name__ == "__main__":
    sys.exit(main())
