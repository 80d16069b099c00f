"""The generator and discriminator keep the interfaces the notebook and users rely on."""

import pytest
import torch
from torch import nn

from facegan.config import D_NORMS
from facegan.errors import ConfigError
from facegan.models import Discriminator, Generator, build_models, weights_init_normal


@pytest.mark.parametrize("image_size", [16, 32, 64, 128, 256])
def test_generator_draws_images_of_the_asked_size_in_tanh_range(image_size):
    generator = Generator(z_size=20, conv_dim=8, image_size=image_size)
    images = generator(torch.randn(2, 20))
    assert images.shape == (2, 3, image_size, image_size)
    assert images.min() >= -1 and images.max() <= 1


@pytest.mark.parametrize("image_size", [16, 32, 64, 128, 256])
def test_discriminator_gives_one_logit_per_image(image_size):
    discriminator = Discriminator(conv_dim=8, image_size=image_size)
    assert discriminator(torch.randn(3, 3, image_size, image_size)).shape == (3, 1)


def test_classic_positional_signatures_default_to_32_px():
    generator, discriminator = Generator(25, 10), Discriminator(10)
    assert generator(torch.randn(4, 25)).shape == (4, 3, 32, 32)
    assert discriminator(torch.randn(4, 3, 32, 32)).shape == (4, 1)


def test_generator_accepts_flat_and_4d_z_alike():
    generator = Generator(16, 8).eval()
    z = torch.randn(5, 16)
    assert torch.equal(generator(z), generator(z.reshape(5, 16, 1, 1)))


def test_a_batch_of_one_trains_in_train_mode():
    discriminator, generator = build_models(16, 8, 32)
    image = generator(torch.randn(1, 16))
    discriminator(image).sum().backward()
    assert image.shape == (1, 3, 32, 32)


def test_discriminator_outputs_are_unbounded_logits():
    discriminator = Discriminator(8)
    with torch.no_grad():
        discriminator.net[-1].bias.fill_(-5.0)
    assert (discriminator(torch.randn(4, 3, 32, 32)) < 0).all()


@pytest.mark.parametrize("bad", [0, 12, 33, 512, 32.0, True, "32"])
def test_unsupported_image_sizes_are_refused_with_the_choices(bad):
    with pytest.raises(ConfigError, match="power of two from 16 to 256"):
        Generator(100, 64, bad)
    with pytest.raises(ConfigError, match="power of two"):
        Discriminator(64, bad)


@pytest.mark.parametrize("name", ["z_size", "conv_dim"])
def test_non_positive_widths_are_refused(name):
    with pytest.raises(ConfigError, match=name):
        Generator(**{name: 0})


def test_weights_init_normal_follows_the_dcgan_paper():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(64, 64, 4),
        nn.ConvTranspose2d(64, 64, 4),
        nn.Linear(256, 256),
        nn.BatchNorm2d(512),
    )
    model.apply(weights_init_normal)
    for layer in model[:3]:
        assert layer.weight.std().item() == pytest.approx(0.02, rel=0.05)
        assert abs(layer.weight.mean().item()) < 0.002
        assert torch.count_nonzero(layer.bias) == 0
    assert model[3].weight.mean().item() == pytest.approx(1.0, abs=0.005)


def test_channel_width_is_capped_so_large_images_stay_trainable():
    generator = Generator(100, 64, 256)
    widest = max(m.out_channels for m in generator.modules() if isinstance(m, nn.ConvTranspose2d))
    assert widest == 64 * 8


def test_every_d_norm_gives_one_logit_per_image_and_only_batch_has_batchnorm():
    for norm in D_NORMS:
        discriminator, _ = build_models(8, 4, 16, norm)
        assert discriminator(torch.randn(3, 3, 16, 16)).shape == (3, 1)
        has_bn = any(isinstance(m, nn.BatchNorm2d) for m in discriminator.modules())
        assert has_bn == (norm == "batch"), norm


def test_spectral_norm_keeps_every_conv_near_unit_norm_after_dcgan_init():
    torch.manual_seed(0)
    discriminator, _ = build_models(8, 8, 16, "spectral")
    # Power iteration converges over forward passes in train mode.
    for _ in range(30):
        discriminator(torch.randn(2, 3, 16, 16))
    for m in discriminator.modules():
        if isinstance(m, nn.Conv2d):
            weight = m.weight.detach().flatten(1)
            assert torch.linalg.matrix_norm(weight, 2).item() == pytest.approx(1.0, rel=0.05)
            stored = m.parametrizations.weight.original.detach()
            assert stored.std().item() == pytest.approx(0.02, rel=0.3)  # the DCGAN init
