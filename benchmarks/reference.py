"""The reference DCGAN recipe: pytorch/examples dcgan/main.py, rewritten for side-by-side timing.

Run from the repository root, as its own program (the end-to-end benchmark does):

    python -m benchmarks.reference --data ROOT --image-size 32 --epochs 2 --out DIR

The recipe: ImageFolder over JPEGs with Resize/CenterCrop/ToTensor/Normalize, a
DataLoader(batch 128, shuffle, 2 workers) that decodes every image every epoch, the example's
nets (a Sigmoid D with BCELoss), its weights_init and Adam settings, fp32 NCHW at torch's default
thread count, and its loop: five .item() calls and a printed line per step, real and fake grids
every 100 steps, and both nets saved at each epoch's end. The throughput benchmark times the
same loop in-process through ExampleRun.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from benchmarks.timing import synchronize, torch_threads
from facegan.synthfaces import render_faces

JPEG_QUALITY = 95
GRID_EVERY = 100  # the example saves real and fake grids every 100 steps


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


def write_jpegs(folder: Path, count: int, size: int, seed: int) -> Path:
    """Render facegan's built-in faces as NNNNNN.jpg in the course layout; returns the root.

    The root holds one class folder, `celeba`, as ImageFolder requires.
    """
    celeba = folder / "processed_celeba_small" / "celeba"
    celeba.mkdir(parents=True, exist_ok=True)
    chunk = 1000  # rendered a chunk at a time, so a large set needs little memory
    for start in range(0, count, chunk):
        images, _ = render_faces(min(chunk, count - start), size, seed, start)
        for i, image in enumerate(images, start):
            Image.fromarray(image).save(celeba / f"{i + 1:06d}.jpg", quality=JPEG_QUALITY)
    return celeba.parent


class ExampleRun:
    """The example's nets, optimisers and training loop over its DataLoader."""

    def __init__(
        self,
        root: Path,
        size: int,
        *,
        device: torch.device,
        batch_size: int = 128,
        z_size: int = 100,
        conv_dim: int = 64,
        workers: int = 2,
        seed: int = 0,
        threads: int | None = None,
    ) -> None:
        self.device, self.nz = device, z_size
        self.threads = torch.get_num_threads() if threads is None else threads
        # Seeded before anything draws: the loader's shuffle and the noise use the global RNG.
        torch.manual_seed(seed)
        self.loader = example_loader(root, size, batch_size, workers)
        self.netG = ExampleGenerator(self.nz, conv_dim, size).to(self.device)
        self.netG.apply(example_weights_init)
        self.netD = ExampleDiscriminator(conv_dim, size).to(self.device)
        self.netD.apply(example_weights_init)
        self.criterion = nn.BCELoss()
        self.optimizerD = torch.optim.Adam(self.netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.optimizerG = torch.optim.Adam(self.netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.fixed_noise = torch.randn(batch_size, self.nz, 1, 1, device=self.device)
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
        with torch_threads(self.threads):  # the example leaves torch's default
            start = time.perf_counter()
            batches = iter(self.loader)
            for i, data in enumerate(batches):
                if steps is not None and i == steps:
                    break
                self.stats.append(self.step(data))
                images += len(data[0])
            del batches  # a partial epoch: shut the workers down now, not at garbage collection
            synchronize(self.device)
            seconds = time.perf_counter() - start
        return images, seconds

    def train(self, epochs: int, out: Path) -> None:
        """The example's main loop whole: print every step, grids every 100, nets every epoch."""
        import torchvision.utils as vutils  # as the example does, at the top of its script

        out.mkdir(parents=True, exist_ok=True)
        for epoch in range(epochs):
            for i, data in enumerate(self.loader):
                stats = self.step(data)
                print(
                    f"[{epoch}/{epochs}][{i}/{len(self.loader)}] Loss_D: {stats['d_loss']:.4f} "
                    f"Loss_G: {stats['g_loss']:.4f} D(x): {stats['d_real']:.4f} D(G(z)): "
                    f"{stats['d_fake']:.4f} / {stats['d_fake_after_d_step']:.4f}"
                )
                if i % GRID_EVERY == 0:
                    vutils.save_image(data[0], out / "real_samples.png", normalize=True)
                    fake = self.netG(self.fixed_noise)
                    path = out / f"fake_samples_epoch_{epoch:03d}.png"
                    vutils.save_image(fake.detach(), path, normalize=True)
            torch.save(self.netG.state_dict(), out / f"netG_epoch_{epoch}.pth")
            torch.save(self.netD.state_dict(), out / f"netD_epoch_{epoch}.pth")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="an ImageFolder root")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--conv-dim", type=int, default=64)
    parser.add_argument("--z-size", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    run = ExampleRun(
        args.data,
        args.image_size,
        device=torch.device("cuda" if torch.cuda.is_available() else "cpu"),
        batch_size=args.batch_size,
        z_size=args.z_size,
        conv_dim=args.conv_dim,
        workers=args.workers,
        seed=args.seed,
    )
    run.train(args.epochs, args.out)


if __name__ == "__main__":
    main()
