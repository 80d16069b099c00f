"""Training throughput: the PyTorch DCGAN example's recipe (a) against facegan's path (b).

Run from the repository root:

    python benchmarks/throughput.py [--sizes 32 64] [--images N [N ...]] [--repeats 3]
                                    [--device auto] [--profile STEPS] [--out PATH]

Both sides train on the same JPEG files in one process, timed in turns (a, b, b, a, a, b):
the CPU may be shared, so only ratios of figures measured side by side mean much, and every
figure is the median of the repeats.

(a) pytorch/examples dcgan/main.py, rewritten here: ImageFolder over the JPEGs with
    Resize/CenterCrop/ToTensor/Normalize, DataLoader(batch 128, shuffle, 2 workers), the
    example's nets (Sigmoid + BCELoss), its weights_init and its loop with five .item() calls
    per step. A repeat is one whole epoch, so it includes the workers' start-up and shutdown
    that every epoch of the example pays. The example's image saving every 100 steps and its
    per-epoch checkpoints are left out, as are facegan's (see (b)).
(b) facegan's models and facegan.train.train_step, fed the way Trainer._batches feeds them:
    the images decoded once (facegan.data.load_faces, timed apart, not in the loop) and held as
    a uint8 tensor, each batch drawn by index in facegan.data.epoch_order and converted by
    facegan.data.to_float. The CPU variants (layout, threads, bf16) are timed side by side
    first and the fastest becomes (b).

FLOPs per image of one training step are counted from the layer shapes, see step_flops().
Writes benchmarks/results/throughput.json (hardware, versions, settings, raw figures).
With --profile STEPS it times nothing: it runs torch.profiler over a few steps of (a) and of
each variant of (b) and prints where the time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facegan.data import epoch_order, load_faces, to_float  # noqa: E402
from facegan.models import build_models  # noqa: E402
from facegan.synthfaces import render_faces  # noqa: E402
from facegan.train import make_optimizers, resolve_device, train_step  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "throughput.json"
# Images per timed repeat. 2,560 at 64 px would take 2-3 min per epoch on the shared 2-core
# machine this was written on (13-18 images/s): these keep `make bench` near 10 min.
DEFAULT_IMAGES = {16: 2048, 32: 2048, 64: 384, 128: 128, 256: 128}
# 2 warm-up steps + 3 repeats x 16 steps = 50 steps at 32 px for the loss check; one warm-up
# step is enough above 32 px, where a step takes seconds.
DEFAULT_WARMUP = {16: 2, 32: 2}
LOSS_WINDOW = 10  # the loss check averages the last this-many steps
JPEG_QUALITY = 95
HOPELESS = 10.0  # bf16 is dropped when its warm-up step is this many times a fp32 step
CPU_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx_vnni", "amx_bf16")
FLOP_FORMULA = (
    "per image, MACs x 2: forward G + 3 D (real, detached fake, fake for the G step); "
    "backward = weight grads (1x forward) + input grads (1x forward) of every pass, except the "
    "input grad of a first layer whose input needs none (G on z, D on real, D on detached "
    "fake): 3G + 9D - G0 - 2D0. Only conv and conv-transpose layers are counted."
)


# --- FLOP count --------------------------------------------------------------------------------


def conv_layer_macs(model: nn.Module, example: torch.Tensor) -> list[int]:
    """Multiply-accumulates per image of each conv / conv-transpose layer, in forward order.

    Read from the shapes seen in one forward pass of `example`. A conv does C_in/groups x k x k
    MACs per output element; a transposed conv does C_out/groups x k x k per input element.
    """
    counts: list[int] = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        kernel = math.prod(module.kernel_size)
        if isinstance(module, nn.ConvTranspose2d):
            per_image = inputs[0][0].numel()
            fan = module.out_channels // module.groups
        else:
            per_image = output[0].numel()
            fan = module.in_channels // module.groups
        counts.append(per_image * fan * kernel)

    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    handles = [layer.register_forward_hook(hook) for layer in layers]
    was_training = model.training
    try:
        model.eval()  # eval BatchNorm accepts a batch of one
        with torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return counts


def step_flops(generator: nn.Module, discriminator: nn.Module, z_size: int, size: int) -> dict:
    """GFLOP per image: G forward, D forward and one whole training step (FLOP_FORMULA)."""
    g_layers = conv_layer_macs(generator, torch.zeros(1, z_size, 1, 1))
    d_layers = conv_layer_macs(discriminator, torch.zeros(1, 3, size, size))
    g, d = sum(g_layers), sum(d_layers)
    step_macs = 3 * g + 9 * d - g_layers[0] - 2 * d_layers[0]
    return {
        "g_forward_gflop": 2 * g / 1e9,
        "d_forward_gflop": 2 * d / 1e9,
        "step_gflop": 2 * step_macs / 1e9,
        "g_layer_macs": g_layers,
        "d_layer_macs": d_layers,
        "formula": FLOP_FORMULA,
    }


# --- (a) the PyTorch DCGAN example -------------------------------------------------------------


def example_widths(width: int, size: int) -> list[int]:
    """Channels from the image end to 4x4: 64 px gives the example's 64, 128, 256, 512."""
    return [width * 2**k for k in range(int(math.log2(size)) - 2)]


class ExampleGenerator(nn.Module):
    """pytorch/examples dcgan Generator (ngf, nz), with one stage per doubling of 4 px.

    At 64 px this is the example's layer list exactly; at 32 px the same family with one stage
    fewer, which gives facegan's widths (256, 128, 64).
    """

    def __init__(self, nz: int = 100, ngf: int = 64, size: int = 64, nc: int = 3) -> None:
        super().__init__()
        widths = example_widths(ngf, size)[::-1]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
        ]
        for c_in, c_out in zip(widths, widths[1:], strict=False):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(True),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.main(input)


class ExampleDiscriminator(nn.Module):
    """pytorch/examples dcgan Discriminator (ndf): conv stages, Sigmoid, output shape (N,)."""

    def __init__(self, ndf: int = 64, size: int = 64, nc: int = 3) -> None:
        super().__init__()
        widths = example_widths(ndf, size)
        layers: list[nn.Module] = [
            nn.Conv2d(nc, widths[0], 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for c_in, c_out in zip(widths, widths[1:], strict=False):
            layers += [
                nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers += [nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False), nn.Sigmoid()]
        self.main = nn.Sequential(*layers)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.main(input).view(-1, 1).squeeze(1)


def example_weights_init(m: nn.Module) -> None:
    """The example's weights_init, matched on class names as it does."""
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        torch.nn.init.normal_(m.weight, 0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        torch.nn.init.normal_(m.weight, 1.0, 0.02)
        torch.nn.init.zeros_(m.bias)


def example_loader(root: Path, size: int, batch_size: int, workers: int) -> DataLoader:
    """The example's dataset and loader: decode, resize and normalise every image, every epoch."""
    dataset = datasets.ImageFolder(
        root=str(root),
        transform=transforms.Compose(
            [
                transforms.Resize(size),
                transforms.CenterCrop(size),
                transforms.ToTensor(),
                transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
            ]
        ),
    )
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)


class ExampleRun:
    """The example's nets, optimisers and training loop over its DataLoader."""

    def __init__(self, root: Path, size: int, settings: Settings) -> None:
        self.device, self.nz = settings.device, settings.z_size
        # Seeded before anything draws: the loader's shuffle and the noise use the global RNG.
        torch.manual_seed(settings.seed)
        self.loader = example_loader(root, size, settings.batch_size, settings.workers)
        self.netG = ExampleGenerator(self.nz, settings.conv_dim, size).to(self.device)
        self.netG.apply(example_weights_init)
        self.netD = ExampleDiscriminator(settings.conv_dim, size).to(self.device)
        self.netD.apply(example_weights_init)
        self.criterion = nn.BCELoss()
        self.optimizerD = torch.optim.Adam(self.netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.optimizerG = torch.optim.Adam(self.netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.stats: list[dict[str, float]] = []

    def step(self, data: list[torch.Tensor]) -> dict[str, float]:
        """The body of the example's loop, minus its print and image saving."""
        real_label, fake_label = 1, 0
        # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
        self.netD.zero_grad()
        real_cpu = data[0].to(self.device)
        batch_size = real_cpu.size(0)
        label = torch.full((batch_size,), real_label, dtype=real_cpu.dtype, device=self.device)
        output = self.netD(real_cpu)
        errD_real = self.criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()
        noise = torch.randn(batch_size, self.nz, 1, 1, device=self.device)
        fake = self.netG(noise)
        label.fill_(fake_label)
        output = self.netD(fake.detach())
        errD_fake = self.criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        self.optimizerD.step()
        # (2) Update G network: maximize log(D(G(z)))
        self.netG.zero_grad()
        label.fill_(real_label)
        output = self.netD(fake)
        errG = self.criterion(output, label)
        errG.backward()
        D_G_z2 = output.mean().item()
        self.optimizerG.step()
        return {
            "d_loss": errD.item(),
            "g_loss": errG.item(),
            "d_real": D_x,
            "d_fake": D_G_z1,
            "d_fake_after_d_step": D_G_z2,
        }

    def run(self, steps: int | None = None) -> tuple[int, float]:
        """Train one epoch (or its first `steps` batches); returns (images, seconds).

        The clock covers the iterator's creation, so the worker start-up is in it.
        """
        images = 0
        start = time.perf_counter()
        batches = iter(self.loader)
        for i, data in enumerate(batches):
            if steps is not None and i == steps:
                break
            self.stats.append(self.step(data))
            images += len(data[0])
        del batches  # a partial epoch: shut the workers down now, not at garbage collection
        synchronize(self.device)
        return images, time.perf_counter() - start


# --- (b) facegan ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One way of running facegan's step: memory layout, thread count, autocast dtype."""

    name: str
    channels_last: bool = False
    threads: int | None = None  # None leaves torch's default (one per core)
    amp_dtype: torch.dtype | None = None


class FaceganRun:
    """facegan's models and train_step, fed by index from the uint8 images in memory."""

    def __init__(self, images: torch.Tensor, variant: Variant, settings: Settings) -> None:
        self.images, self.variant = images, variant
        self.device, self.seed = settings.device, settings.seed
        self.batch_size, self.z_size = settings.batch_size, settings.z_size
        size = images.shape[1]
        torch.manual_seed(settings.seed)
        self.discriminator, self.generator = build_models(settings.z_size, settings.conv_dim, size)
        for model in (self.discriminator, self.generator):
            model.to(self.device)
            if variant.channels_last:
                model.to(memory_format=torch.channels_last)
        self.d_optimizer, self.g_optimizer = make_optimizers(self.discriminator, self.generator)
        self.z_rng = torch.Generator().manual_seed(settings.seed)
        self.epoch = 0  # each run() call takes the next epoch's order
        self.stats: list[dict[str, float]] = []

    def batches(self, steps: int | None) -> Iterator[torch.Tensor]:
        """This epoch's batches, drawn by index as Trainer._batches draws them."""
        order = epoch_order(len(self.images), self.seed, self.epoch)
        count = len(self.images) // self.batch_size if steps is None else steps
        for b in range(count):
            index = order[b * self.batch_size : (b + 1) * self.batch_size].to(self.device)
            batch = to_float(self.images[index])
            if self.variant.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            yield batch

    def run(self, steps: int | None = None) -> tuple[int, float]:
        """Train one epoch (or its first `steps` batches); returns (images, seconds)."""
        with torch_threads(self.variant.threads):
            start = time.perf_counter()
            pending = []
            for real_images in self.batches(steps):
                z = torch.randn(self.batch_size, self.z_size, generator=self.z_rng)
                pending.append(
                    train_step(
                        self.discriminator,
                        self.generator,
                        self.d_optimizer,
                        self.g_optimizer,
                        real_images,
                        z.to(self.device),
                        amp_dtype=self.variant.amp_dtype,
                    )
                )
            # One host sync for the whole run, as Trainer pays one per logging window.
            names = list(pending[0])
            values = torch.stack([torch.stack([s[k] for k in names]) for s in pending]).tolist()
            synchronize(self.device)
            seconds = time.perf_counter() - start
        self.epoch += 1
        self.stats += [dict(zip(names, row, strict=True)) for row in values]
        return len(pending) * self.batch_size, seconds


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Use `threads` intra-op threads inside the block (None: leave the setting alone)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that the clock measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- measurement ------------------------------------------------------------------------------


@dataclass
class Settings:
    """What every run shares."""

    device: torch.device
    batch_size: int = 128
    z_size: int = 100
    conv_dim: int = 64
    workers: int = 2
    seed: int = 0
    repeats: int = 3
    warmup_steps: int | None = None  # None: DEFAULT_WARMUP, else 1
    images: dict[int, int] = field(default_factory=dict)

    def warmup(self, size: int) -> int:
        """Untimed steps before the repeats at this size."""
        return DEFAULT_WARMUP.get(size, 1) if self.warmup_steps is None else self.warmup_steps


def write_jpegs(folder: Path, count: int, size: int, seed: int) -> Path:
    """Render facegan's built-in faces as NNNNNN.jpg in the course layout; returns the root.

    The root holds one class folder, `celeba`, as ImageFolder requires.
    """
    images, _ = render_faces(count, size, seed)
    celeba = folder / "processed_celeba_small" / "celeba"
    celeba.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(celeba / f"{i + 1:06d}.jpg", quality=JPEG_QUALITY)
    return celeba.parent


def variants_to_time(device: torch.device, leaders: Sequence[Variant]) -> list[Variant]:
    """The variants to time at one size.

    On the CPU, the first size tries layout x threads (4 variants); later sizes, where a step
    costs several seconds, try plain fp32 and the first size's fastest other variant only.
    """
    if device.type != "cpu":
        return [
            Variant("fp32"),
            Variant("fp32 channels_last", channels_last=True),
            Variant("bf16 autocast", amp_dtype=torch.bfloat16),
            Variant("bf16 autocast channels_last", channels_last=True, amp_dtype=torch.bfloat16),
        ]
    cores = torch.get_num_threads()
    plain = Variant(f"fp32, {cores} threads")
    if leaders:
        return [plain, next(v for v in leaders if v != plain)]
    variants = [plain, Variant(f"fp32 channels_last, {cores} threads", channels_last=True)]
    if cores > 1:
        variants += [
            Variant("fp32, 1 thread", threads=1),
            Variant("fp32 channels_last, 1 thread", channels_last=True, threads=1),
        ]
    return variants


def ablation(
    images: torch.Tensor, settings: Settings, leaders: Sequence[Variant]
) -> tuple[list[Variant], dict]:
    """Time facegan's variants in turns on a few steps each; returns them fastest first.

    On the CPU, bf16 autocast is timed once at the first size (no AVX-512 bf16 here: oneDNN
    has to emulate it) and never chosen, since it is not measured like the others.
    """
    steps = 2 if images.shape[1] <= 32 else 1
    runs = [FaceganRun(images, v, settings) for v in variants_to_time(settings.device, leaders)]
    for run in runs:
        run.run(1)  # warm-up: oneDNN builds its kernels on the first step
    table: dict[str, dict] = {run.variant.name: {"images_per_s": []} for run in runs}
    for r in range(settings.repeats):
        for run in runs[r % len(runs) :] + runs[: r % len(runs)]:  # rotate who goes first
            count, seconds = run.run(steps)
            table[run.variant.name]["images_per_s"].append(count / seconds)
    for row in table.values():
        row["median"] = statistics.median(row["images_per_s"])
        row["steps_per_repeat"] = steps
    ranked = sorted((run.variant for run in runs), key=lambda v: -table[v.name]["median"])
    if settings.device.type == "cpu" and not leaders:
        fp32_step = settings.batch_size / table[runs[0].variant.name]["median"]
        table["bf16 autocast (once)"] = time_bf16_once(images, settings, fp32_step)
    return ranked, table


def time_bf16_once(images: torch.Tensor, settings: Settings, fp32_step_s: float) -> dict:
    """One warm-up step and, unless it is hopeless, two timed steps of bf16 autocast."""
    run = FaceganRun(images, Variant("bf16", amp_dtype=torch.bfloat16), settings)
    _, warmup = run.run(1)
    row = {"warmup_step_s": warmup, "fp32_step_s": fp32_step_s}
    if warmup > HOPELESS * fp32_step_s:
        row["skipped"] = f"warm-up step took {warmup / fp32_step_s:.0f}x a fp32 step"
        return row
    count, seconds = run.run(2)
    row["images_per_s"] = [count / seconds]
    row["median"] = count / seconds
    return row


def interleaved(
    a: Callable[[], tuple[int, float]], b: Callable[[], tuple[int, float]], repeats: int
) -> dict[str, list[float]]:
    """Run a and b `repeats` times each in turns a b, b a, a b...; images/s of each repeat."""
    figures: dict[str, list[float]] = {"a": [], "b": []}
    for r in range(repeats):
        order = (("a", a), ("b", b)) if r % 2 == 0 else (("b", b), ("a", a))
        for name, run in order:
            count, seconds = run()
            figures[name].append(count / seconds)
    return figures


def loss_summary(stats: list[dict[str, float]]) -> dict:
    """Mean of each statistic over the last LOSS_WINDOW steps."""
    window = stats[-LOSS_WINDOW:]
    summary = {k: statistics.fmean(s[k] for s in window) for k in window[0]}
    return {"steps": len(stats), "window": len(window), **summary}


def measure_size(
    size: int, workdir: Path, settings: Settings, leaders: Sequence[Variant]
) -> tuple[dict, list[Variant]]:
    """Everything at one size: data, ablation, a/b repeats, loss check; and the ranking."""
    count = settings.images[size]
    root = write_jpegs(workdir / f"{size}px", count, size, settings.seed)
    start = time.perf_counter()
    faces = load_faces(root, size, cache_dir=workdir / "cache", progress=False)
    decode_s = time.perf_counter() - start
    images = torch.from_numpy(np.array(faces.images)).to(settings.device)

    ranked, table = ablation(images, settings, leaders)
    variant = ranked[0]
    facegan = FaceganRun(images, variant, settings)
    # Built last: from here on only (a) draws from the global RNG (b has its own generators),
    # so (a)'s init, shuffles and noise all follow from the seed however the runs interleave.
    example = ExampleRun(root, size, settings)
    example.run(settings.warmup(size))
    facegan.run(settings.warmup(size))
    figures = interleaved(example.run, facegan.run, settings.repeats)

    discriminator, generator = build_models(settings.z_size, settings.conv_dim, size)
    flops = step_flops(generator, discriminator, settings.z_size, size)
    ratios = [b / a for a, b in zip(figures["a"], figures["b"], strict=True)]
    medians = {k: statistics.median(v) for k, v in figures.items()}
    row = {
        "image_size": size,
        "images_per_repeat": count,
        "steps_per_repeat": count // settings.batch_size,
        "b_variant": variant.name,
        "b_decode_once_s": decode_s,
        "images_per_s": {**figures, "median_a": medians["a"], "median_b": medians["b"]},
        "ratio_b_over_a": {"per_repeat": ratios, "median": statistics.median(ratios)},
        "gflop_per_s": {k: medians[k] * flops["step_gflop"] for k in ("a", "b")},
        "flops": flops,
        "ablation_b": table,
        "loss_check": {"a": loss_summary(example.stats), "b": loss_summary(facegan.stats)},
    }
    return row, ranked


# --- profile ----------------------------------------------------------------------------------


def profile_size(size: int, workdir: Path, settings: Settings, steps: int) -> dict:
    """torch.profiler over `steps` steps of (a) and of each CPU variant of (b), after a warm-up.

    Self times are those of the main process: (a)'s workers show up only as the main process
    waiting in DataLoader.__next__ and as slower kernels when they compete for the cores.
    """
    root = write_jpegs(workdir / f"profile{size}px", steps * settings.batch_size, size, 0)
    faces = load_faces(root, size, cache_dir=workdir / "cache", progress=False)
    images = torch.from_numpy(np.array(faces.images)).to(settings.device)
    runs: dict[str, ExampleRun | FaceganRun] = {"(a) example": ExampleRun(root, size, settings)}
    for variant in variants_to_time(settings.device, []):
        runs[f"(b) {variant.name}"] = FaceganRun(images, variant, settings)
    result = {}
    for name, run in runs.items():
        run.run(1)
        with torch.profiler.profile() as prof:
            _, seconds = run.run(steps)
        result[name] = {"wall_s_per_step": seconds / steps, "top_ops": top_ops(prof, steps)}
    return result


def top_ops(prof: torch.profiler.profile, steps: int, count: int = 8) -> list[dict]:
    """The ops with the most self CPU time, in ms per step."""
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return [
        {"op": e.key, "calls": e.count, "self_ms_per_step": e.self_cpu_time_total / 1e3 / steps}
        for e in events[:count]
    ]


# --- report -----------------------------------------------------------------------------------


def hardware(device: torch.device) -> dict:
    """CPU model, cores, the SIMD flags that matter here, and the GPU if one is used."""
    model, flags = platform.processor() or "unknown", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    info = {
        "cpu": model,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_flags": {flag: flag in flags for flag in CPU_FLAGS},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def versions() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
    }


def print_table(result: dict) -> None:
    hw = result["hardware"]
    print(
        f"\n{hw['cpu']}, {hw['cores']} cores, {hw['torch_cpu_capability']}, device {hw['device']}"
    )
    print(
        f"batch {result['settings']['batch_size']}, median of {result['settings']['repeats']} "
        "interleaved repeats; (a) = pytorch/examples DCGAN recipe (whole epochs incl. worker "
        "start-up), (b) = facegan (images decoded once beforehand, not timed)"
    )
    header = (
        f"{'size':>5} {'images':>6} {'(a) img/s':>10} {'(b) img/s':>10} {'(b)/(a)':>8} "
        f"{'GFLOP/img':>10} {'(a) GFLOP/s':>12} {'(b) GFLOP/s':>12}  (b) variant"
    )
    print(header)
    for row in result["sizes"]:
        speed, flops = row["images_per_s"], row["gflop_per_s"]
        print(
            f"{row['image_size']:>3}px {row['images_per_repeat']:>6} {speed['median_a']:>10.1f} "
            f"{speed['median_b']:>10.1f} {row['ratio_b_over_a']['median']:>8.2f} "
            f"{row['flops']['step_gflop']:>10.3f} {flops['a']:>12.1f} {flops['b']:>12.1f}  "
            f"{row['b_variant']}"
        )
    for row in result["sizes"]:
        flops = row["flops"]
        print(
            f"\n{row['image_size']} px: G fwd {flops['g_forward_gflop']:.3f}, D fwd "
            f"{flops['d_forward_gflop']:.3f}, step {flops['step_gflop']:.3f} GFLOP/image; "
            f"(b) one-time JPEG decode {row['b_decode_once_s']:.2f} s"
        )
        print("  ablation of (b), images/s (median):")
        for name, entry in row["ablation_b"].items():
            shown = f"{entry['median']:.1f}" if "median" in entry else entry.get("skipped")
            print(f"    {name:<36} {shown}")
        checks = row["loss_check"]
        window, steps = checks["a"]["window"], checks["a"]["steps"]
        print(f"  loss check, mean of the last {window} of {steps} steps (a: example, b: facegan):")
        for side in ("a", "b"):
            s = checks[side]
            print(
                f"    ({side}) D loss {s['d_loss']:.3f}  G loss {s['g_loss']:.3f}  "
                f"D(x) {s['d_real']:.3f}  D(G(z)) {s['d_fake']:.3f}"
            )
    print(f"\nwhole benchmark: {result['runtime_s']:.0f} s")


def print_profile(profile: dict) -> None:
    for size, runs in profile.items():
        for name, data in runs.items():
            print(f"\nprofile {size} px, {name}: {data['wall_s_per_step']:.2f} s per step")
            for op in data["top_ops"]:
                print(f"  {op['self_ms_per_step']:>9.1f} ms/step  {op['calls']:>5}  {op['op']}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument(
        "--images",
        type=int,
        nargs="+",
        help="images per repeat: one for every size, or one per size "
        f"(default {', '.join(f'{s} px: {n}' for s, n in DEFAULT_IMAGES.items())})",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="STEPS",
        help="instead of timing, profile STEPS steps of (a) and of each variant of (b) per size",
    )
    parser.add_argument("--out", type=Path, help=f"default {RESULTS.relative_to(REPO)}")
    # Smaller settings for the smoke test; the benchmark's figures use the defaults.
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--conv-dim", type=int, default=64)
    parser.add_argument("--z-size", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warmup-steps", type=int, help="default: 2 up to 32 px, else 1")
    return parser.parse_args(argv)


def images_per_size(args: argparse.Namespace) -> dict[int, int]:
    """Images per repeat for each size: whole batches, so (a) and (b) take the same steps."""
    given = args.images or [DEFAULT_IMAGES[s] for s in args.sizes]
    if len(given) not in (1, len(args.sizes)):
        raise SystemExit("--images takes one count, or one per size")
    counts = dict(
        zip(args.sizes, given * len(args.sizes) if len(given) == 1 else given, strict=False)
    )
    for size, count in counts.items():
        if count < args.batch_size or count % args.batch_size:
            raise SystemExit(f"--images for {size} px must be a multiple of {args.batch_size}")
    return counts


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    device = resolve_device(args.device)
    # The example turns this on; on the CPU it does nothing, on a GPU it helps both sides.
    torch.backends.cudnn.benchmark = True
    settings = Settings(
        device=device,
        batch_size=args.batch_size,
        z_size=args.z_size,
        conv_dim=args.conv_dim,
        workers=args.workers,
        repeats=args.repeats,
        warmup_steps=args.warmup_steps,
        images=images_per_size(args),
    )
    if args.profile:
        return profile_only(args, settings)
    load_before = os.getloadavg()
    rows, leaders = [], []
    with tempfile.TemporaryDirectory(prefix="facegan-throughput-") as tmp:
        for size in args.sizes:
            row, ranked = measure_size(size, Path(tmp), settings, leaders)
            rows.append(row)
            leaders = leaders or ranked
    result = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "hardware": hardware(device),
        "versions": versions(),
        "settings": {
            "sizes": args.sizes,
            "images_per_repeat": settings.images,
            "batch_size": settings.batch_size,
            "repeats": settings.repeats,
            "warmup_steps": {size: settings.warmup(size) for size in args.sizes},
            "z_size": settings.z_size,
            "conv_dim": settings.conv_dim,
            "example_workers": settings.workers,
            "seed": settings.seed,
            "jpeg_quality": JPEG_QUALITY,
            "timed": "(a): whole epochs, from DataLoader iterator creation (worker start-up) to "
            "the last step; (b): whole epochs of facegan batching + train_step, with one host "
            "sync at the end. Both exclude image saving and checkpoints. (b)'s JPEG decode "
            "happens once into its cache and is not in the loop (b_decode_once_s).",
            "loss_check": "same seed, fp32, same JPEGs, same number of steps; init order and "
            "data order differ, so the figures are comparable, not equal",
        },
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "sizes": rows,
        "runtime_s": time.perf_counter() - started,
    }
    out = args.out or RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"wrote {out}")
    return result


def profile_only(args: argparse.Namespace, settings: Settings) -> dict:
    """The --profile mode: print where each side's time goes; write JSON only to --out."""
    with tempfile.TemporaryDirectory(prefix="facegan-profile-") as tmp:
        profile = {
            size: profile_size(size, Path(tmp), settings, args.profile) for size in args.sizes
        }
    print_profile(profile)
    result = {"hardware": hardware(settings.device), "versions": versions(), "profile": profile}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
