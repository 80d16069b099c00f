"""One training step: both networks move, and freezing D in G's step changes no update."""

import pytest
import torch

from facegan.models import build_models
from facegan.step import make_optimizers, train_step
from tests.support.steps import textbook_step


def parameters(module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.state_dict().values()]).clone()


def test_a_step_updates_both_networks_and_reports_d_outputs():
    torch.manual_seed(0)
    discriminator, generator = build_models(8, 4, 16)
    d_before, g_before = parameters(discriminator), parameters(generator)
    stats = train_step(
        discriminator,
        generator,
        *make_optimizers(discriminator, generator),
        torch.rand(8, 3, 16, 16) * 2 - 1,
        torch.randn(8, 8),
    )
    assert not torch.equal(parameters(discriminator), d_before)
    assert not torch.equal(parameters(generator), g_before)
    assert set(stats) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert 0 < stats["d_real"].item() < 1 and 0 < stats["d_fake"].item() < 1


@pytest.mark.parametrize("d_norm", ["batch", "spectral"])
def test_freezing_d_in_gs_step_changes_no_update_and_thaws_only_what_was_trainable(d_norm):
    real, z = torch.rand(8, 3, 16, 16) * 2 - 1, torch.randn(8, 8)
    pairs = []
    for step in (train_step, textbook_step):
        torch.manual_seed(0)
        discriminator, generator = build_models(8, 4, 16, d_norm=d_norm)
        optimizers = make_optimizers(discriminator, generator)
        frozen = next(discriminator.parameters())
        frozen.requires_grad_(False)  # a user's frozen layer must stay frozen
        for _ in range(3):
            step(discriminator, generator, *optimizers, real, z)
        assert not frozen.requires_grad
        assert all(p.requires_grad for p in list(discriminator.parameters())[1:])
        pairs.append((parameters(discriminator), parameters(generator)))
    (d_fast, g_fast), (d_textbook, g_textbook) = pairs
    torch.testing.assert_close(g_fast, g_textbook, rtol=0, atol=1e-6)
    torch.testing.assert_close(d_fast, d_textbook, rtol=0, atol=1e-6)


def test_the_recipe_options_come_by_keyword():
    torch.manual_seed(0)
    discriminator, generator = build_models(8, 4, 16, d_norm="none")
    optimizers = make_optimizers(discriminator, generator)
    real, z = torch.rand(8, 3, 16, 16) * 2 - 1, torch.randn(8, 8)
    with pytest.raises(TypeError):
        train_step(discriminator, generator, *optimizers, real, z, False)
    stats = train_step(discriminator, generator, *optimizers, real, z, loss="wgan-gp")
    assert set(stats) == {"d_loss", "g_loss", "d_real", "d_fake", "gradient_penalty"}
