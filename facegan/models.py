"""The DCGAN generator and discriminator, for any power-of-two image size from 16 to 256.

Both networks read top to bottom like the DCGAN paper's figure: the generator grows a
4x4 map by doubling it until it reaches the image size, the discriminator halves the
image back down to 4x4. Channel width doubles as the map shrinks, capped at 8x conv_dim
so that 128 and 256 px stay trainable.
"""

import math

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from facegan.config import D_NORMS, check_choice, check_positive
from facegan.images import check_image_size

MAX_WIDTH = 8


def channel_widths(conv_dim: int, image_size: int) -> list[int]:
    """Channels of the feature maps from the image-size end down to 4x4."""
    n_stages = int(math.log2(check_image_size(image_size))) - 2
    return [conv_dim * min(2**k, MAX_WIDTH) for k in range(n_stages)]


class Generator(nn.Module):
    """Maps z of shape (N, z_size) or (N, z_size, 1, 1) to images (N, 3, S, S) in [-1, 1]."""

    def __init__(self, z_size: int = 100, conv_dim: int = 64, image_size: int = 32):
        super().__init__()
        check_positive("z_size", z_size)
        check_positive("conv_dim", conv_dim)
        self.z_size, self.conv_dim, self.image_size = z_size, conv_dim, image_size
        widths = channel_widths(conv_dim, image_size)[::-1]
        # A 4x4 transposed conv on a 1x1 input is the paper's projection of z to a 4x4 map.
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_size, widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        for c_in, c_out in zip(widths, widths[1:], strict=False):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], 3, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.reshape(z.shape[0], self.z_size, 1, 1))


class Discriminator(nn.Module):
    """Maps images (N, 3, S, S) to one logit per image, shape (N, 1); no sigmoid.

    norm chooses the hidden layers' normalisation, one of config.D_NORMS (default: BatchNorm).
    """

    def __init__(self, conv_dim: int = 64, image_size: int = 32, norm: str = "batch"):
        super().__init__()
        check_positive("conv_dim", conv_dim)
        check_choice("d_norm", norm, D_NORMS)
        self.conv_dim, self.image_size, self.norm = conv_dim, image_size, norm
        widths = channel_widths(conv_dim, image_size)
        # No BatchNorm on the first layer, as in the paper: it would normalise away the
        # colour statistics that tell real from fake.
        layers: list[nn.Module] = [
            nn.Conv2d(3, widths[0], 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for c_in, c_out in zip(widths, widths[1:], strict=False):
            if norm == "batch":
                layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out)]
            else:
                layers += [nn.Conv2d(c_in, c_out, 4, 2, 1)]
            layers += [nn.LeakyReLU(0.2, inplace=True)]
        layers += [nn.Conv2d(widths[-1], 1, 4, 1, 0)]
        if norm == "spectral":
            layers = [spectral_norm(m) if isinstance(m, nn.Conv2d) else m for m in layers]
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).reshape(images.shape[0], 1)


def weights_init_normal(m: nn.Module) -> None:
    """DCGAN init: conv and linear weights from N(0, 0.02), BatchNorm scale from N(1, 0.02).

    Apply with `model.apply(weights_init_normal)`.
    """
    if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        # Under spectral norm, .weight is computed from the stored original: set that.
        if parametrize.is_parametrized(m, "weight"):
            nn.init.normal_(m.parametrizations.weight.original, 0.0, 0.02)
        else:
            nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def build_models(
    z_size: int = 100, conv_dim: int = 64, image_size: int = 32, d_norm: str = "batch"
) -> tuple[Discriminator, Generator]:
    """A discriminator and generator pair, initialised the DCGAN way."""
    discriminator = Discriminator(conv_dim, image_size, d_norm)
    generator = Generator(z_size, conv_dim, image_size)
    discriminator.apply(weights_init_normal)
    generator.apply(weights_init_normal)
    return discriminator, generator


@torch.no_grad()
def sample_images(generator: Generator, z: torch.Tensor) -> torch.Tensor:
    """Images G(z) in [-1, 1], on the CPU, with eval-mode BatchNorm.

    Eval mode normalises with the running statistics, so an image depends on its own z alone.
    z may live on any device; the generator's mode is restored afterwards.
    """
    was_training = generator.training
    generator.eval()
    try:
        return generator(z.to(next(generator.parameters()).device)).float().cpu()
    finally:
        generator.train(was_training)
