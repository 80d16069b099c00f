"""The notebook's helpers: data loaders, grids, plots, settings and model tables, source display."""

from __future__ import annotations

import inspect
import os
import platform
from dataclasses import fields
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision.utils import make_grid

from facegan.config import TrainConfig
from facegan.data import load_faces
from facegan.history import training_rows
from facegan.models import sample_images
from facegan.runtime import cpu_info


def get_dataloader(
    batch_size: int, image_size: int, data_dir: str = "synthetic", n_images: int | None = None
) -> DataLoader:
    """The classic course loader: shuffled batches of float faces [B, 3, S, S] in [-1, 1].

    data_dir is "synthetic", "celeba", or a folder or zip of images. The images are decoded
    once into a cache, so no worker processes are needed.
    """
    dataset = load_faces(data_dir, image_size, n_images)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)


def environment() -> dict[str, str]:
    """What this notebook runs on: versions, device and CPU threads."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "CPU": f"{cpu_info().model} ({os.cpu_count()} cores)",
        "CPU threads used by torch": str(torch.get_num_threads()),
        "CUDA GPU": gpu,
    }


def to_images(batch: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 NHWC or float NCHW in [-1, 1] -> float NCHW in [0, 1] on the CPU, for display."""
    if isinstance(batch, np.ndarray):
        batch = torch.from_numpy(np.array(batch))
    batch = batch.detach().cpu()
    if batch.dtype == torch.uint8:
        return batch.permute(0, 3, 1, 2).float() / 255
    return ((batch.float() + 1) / 2).clamp(0, 1)


def markdown_table(values: dict[str, object], header: tuple[str, str] = ("", "")) -> str:
    """A two-column Markdown table, one row per key."""
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    return "\n".join(lines + [f"| {key} | {value} |" for key, value in values.items()])


def show_grid(
    images: torch.Tensor | np.ndarray, nrow: int = 8, title: str | None = None, size: float = 6
) -> plt.Figure:
    """Show images (uint8 NHWC, or float NCHW in [-1, 1]) as one grid."""
    grid = make_grid(to_images(images), nrow=nrow, padding=2, pad_value=1.0)
    fig, ax = plt.subplots(figsize=(size, size * grid.shape[1] / grid.shape[2]))
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return fig


def settings_table(config: TrainConfig) -> str:
    """A Markdown table of a run's settings: each parameter, its value and what it does."""
    lines = ["| parameter | value | meaning |", "|---|---|---|"]
    for setting in fields(config):
        value = getattr(config, setting.name)
        lines.append(f"| {setting.name.upper()} | {value!r} | {setting.metadata['help']} |")
    return "\n".join(lines)


def show_source(obj: object) -> object:
    """The source code of a function or class, highlighted, so the report shows the real code."""
    from IPython.display import Code

    return Code(inspect.getsource(obj), language="python")


def layer_table(model: nn.Module, input_shape: tuple[int, ...]) -> str:
    """A Markdown table of each layer's output shape and parameter count, for one input."""
    rows: list[tuple[str, str, int]] = []

    def record(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        params = sum(p.numel() for p in module.parameters(recurse=False))
        rows.append((type(module).__name__, str(tuple(output.shape)), params))

    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(record) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(input_shape))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    total = sum(p.numel() for p in model.parameters())
    lines = ["| # | layer | output shape | parameters |", "|---|---|---|---:|"]
    lines += [f"| {i} | {name} | {shape} | {n:,} |" for i, (name, shape, n) in enumerate(rows)]
    lines.append(f"| | **total** | | **{total:,}** |")
    return "\n".join(lines)


def plot_history(history: list[dict]) -> plt.Figure:
    """Loss curves and the mean discriminator outputs D(x) and D(G(z)) against the step."""
    rows = training_rows(history)
    steps = [row["step"] for row in rows]
    fig, (losses, outputs) = plt.subplots(1, 2, figsize=(12, 4))
    losses.plot(steps, [row["d_loss"] for row in rows], label="discriminator")
    losses.plot(steps, [row["g_loss"] for row in rows], label="generator")
    losses.set(title="Training losses", xlabel="step", ylabel="loss")
    d_real, d_fake = [row["d_real"] for row in rows], [row["d_fake"] for row in rows]
    outputs.plot(steps, d_real, label="D(x), real")
    outputs.plot(steps, d_fake, label="D(G(z)), fake")
    outputs.set(title="Discriminator's mean output", xlabel="step")
    if all(0 <= value <= 1 for value in d_real + d_fake):  # probabilities (the bce loss)
        outputs.axhline(0.5, color="grey", lw=0.8, ls="--")
        outputs.set(ylim=(0, 1))
    for ax in (losses, outputs):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# Metric curves: (history key, title, the real-data key drawn as the bound, higher is better).
METRIC_PANELS = (
    ("faces_found", "Faces found (Haar)", "faces_found_real", True),
    ("face_distance", "Face distance", "face_distance_real", False),
    ("face_precision", "Face precision", "face_precision_real", True),
    ("face_recall", "Face recall", "face_recall_real", True),
    ("mode_coverage", "Attribute modes covered", None, True),
    ("attribute_kl", "Attribute KL to real", "real_attribute_kl", False),
    ("confidence", "Classifier confidence", "real_confidence", True),
    ("fid", "FID", None, False),
    ("kid", "KID", None, False),
)


def plot_metrics(history: list[dict]) -> plt.Figure | None:
    """One panel per metric the evaluations hold, against the epoch; None if there were none.

    Dashed lines are the real data's own score, the bound a perfect generator would reach (for
    the face measures: held-out real faces against the reference).
    """
    rows = [row for row in history if row.get("kind") == "eval"]
    panels = [p for p in METRIC_PANELS if rows and rows[-1].get(p[0]) is not None]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), squeeze=False)
    epochs = [row["epoch"] for row in rows]
    for ax, (key, title, bound, higher) in zip(axes[0], panels, strict=True):
        ax.plot(epochs, [row[key] for row in rows], marker="o")
        if bound and rows[-1].get(bound) is not None:
            ax.axhline(rows[-1][bound], color="grey", ls="--", lw=0.8, label="real data")
            ax.legend()
        if key == "mode_coverage":
            ax.axhline(1.0, color="grey", ls="--", lw=0.8)
        ax.set(title=f"{title} ({'higher' if higher else 'lower'} is better)", xlabel="epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# The default report's goals: generated faces detected at least 0.8 times as often as real
# ones, and at least 90% of the attribute combinations that real faces cover at the same N.
GOALS = {"faces_found_ratio": 0.8, "mode_coverage": 0.9}


def metrics_table(result: dict) -> str:
    """A Markdown table of one evaluation: generated, real data, and the goal where one is set."""
    lines = ["| measure | generated | real data | goal |", "|---|---:|---:|---|"]

    def goal(key: str) -> str:
        if key not in GOALS or result.get(key) is None:
            return ""
        met = "met" if result[key] >= GOALS[key] else "not met"
        return f"{key.replace('_', ' ')} >= {GOALS[key]}: {met} ({result[key]:.2f})"

    if result.get("faces_found") is not None:
        lines.append(
            f"| faces found (Haar), {result['n']:,} images | {result['faces_found']:.1%} "
            f"| {result['faces_found_real']:.1%} | {goal('faces_found_ratio')} |"
        )
    if result.get("face_distance") is not None:
        n = f"{result['face_n']:,}"
        lines += [
            f"| face distance (Fréchet, dlib descriptors), {n} each | "
            f"{result['face_distance']:.4f} | {result['face_distance_real']:.4f} "
            "| lower is better |",
            f"| face precision (k = 3) | {result['face_precision']:.1%} "
            f"| {result['face_precision_real']:.1%} | higher is better |",
            f"| face recall (k = 3) | {result['face_recall']:.1%} "
            f"| {result['face_recall_real']:.1%} | higher is better |",
        ]
    elif result.get("faceid_unavailable"):
        lines.append(f"| face measures | unavailable: {result['faceid_unavailable']} | | |")
    if result.get("mode_coverage") is not None:
        lines += [
            f"| attribute modes covered | {result['modes']} | {result['modes_real']} "
            f"| {goal('mode_coverage')} |",
            f"| attribute KL to real (nats) | {result['attribute_kl']:.3f} "
            f"| {result['real_attribute_kl']:.3f} | lower is better |",
            f"| classifier confidence | {result['confidence']:.3f} "
            f"| {result['real_confidence']:.3f} | higher is better |",
        ]
    if result.get("fid") is not None:
        lines.append(f"| FID | {result['fid']:.2f} | 0 | lower is better |")
        lines.append(f"| KID | {result['kid']:.4f} ± {result['kid_std']:.4f} | 0 | |")
    elif result.get("fid_unavailable"):
        lines.append(f"| FID, KID | unavailable: {result['fid_unavailable']} | | |")
    return "\n".join(lines)


def show_epoch_samples(run_dir: str | Path, most: int = 6) -> plt.Figure:
    """The fixed-z grids of up to `most` epochs, evenly spread from first to last."""
    paths = sorted((Path(run_dir) / "samples").glob("epoch_*.png"))
    if len(paths) > most:
        paths = [paths[round(i)] for i in np.linspace(0, len(paths) - 1, most)]
    fig, axes = plt.subplots(1, len(paths), figsize=(3 * len(paths), 3.2), squeeze=False)
    for ax, path in zip(axes[0], paths, strict=True):
        ax.imshow(plt.imread(path), interpolation="nearest")
        ax.set_title(f"epoch {int(path.stem.split('_')[1])}")
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def interpolate(generator: nn.Module, z_start: torch.Tensor, z_end: torch.Tensor, steps: int = 8):
    """Images along the straight line from z_start to z_end, in eval mode, on the CPU."""
    weights = torch.linspace(0, 1, steps).reshape(steps, 1)
    z = (1 - weights) * z_start.reshape(1, -1) + weights * z_end.reshape(1, -1)
    return sample_images(generator, z)


def nearest_training_images(samples: torch.Tensor, train_images: np.ndarray) -> torch.Tensor:
    """For each sample, the training image closest in pixel space (L2), as uint8 NHWC.

    If the nearest images are near-copies of the samples, the generator memorised them.
    """
    flat_samples = (to_images(samples) * 255).permute(0, 2, 3, 1).reshape(len(samples), -1)
    best = torch.full((len(samples),), float("inf"))
    best_index = torch.zeros(len(samples), dtype=torch.long)
    for start in range(0, len(train_images), 4096):
        chunk = torch.from_numpy(np.array(train_images[start : start + 4096]))
        distances = torch.cdist(flat_samples, chunk.reshape(len(chunk), -1).float())
        value, index = distances.min(dim=1)
        better = value < best
        best[better], best_index[better] = value[better], index[better] + start
    return torch.from_numpy(np.array(train_images[best_index.numpy()]))
