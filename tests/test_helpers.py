"""The notebook's helpers draw the right things from the right data."""

from dataclasses import fields

import matplotlib
import numpy as np
import pytest
import torch

import helpers
from facegan.config import TrainConfig
from facegan.models import Discriminator, Generator

matplotlib.use("Agg")


def test_get_dataloader_batches_float_faces_in_tanh_range():
    batch = next(iter(helpers.get_dataloader(8, 16, "synthetic", n_images=32)))
    assert batch.shape == (8, 3, 16, 16) and batch.dtype == torch.float32
    assert batch.min() >= -1 and batch.max() <= 1


def test_to_images_maps_both_layouts_to_the_same_display_range():
    uint8 = np.full((2, 4, 4, 3), 255, dtype=np.uint8)
    floats = torch.ones(2, 3, 4, 4)
    assert torch.equal(helpers.to_images(uint8), helpers.to_images(floats))


def test_layer_table_lists_each_layer_with_shapes_and_the_true_total():
    model = Discriminator(8, 32)
    table = helpers.layer_table(model, (1, 3, 32, 32))
    assert "| Conv2d | (1, 8, 16, 16) | 392 |" in table
    assert table.rstrip().endswith(f"**{sum(p.numel() for p in model.parameters()):,}** |")
    assert model.training


def test_interpolation_starts_and_ends_at_the_given_codes():
    generator = Generator(8, 4, 16).eval()
    start, end = torch.randn(8), torch.randn(8)
    path = helpers.interpolate(generator, start, end, steps=5)
    assert path.shape == (5, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(path[0], generator(start[None])[0])
        torch.testing.assert_close(path[-1], generator(end[None])[0])


def test_nearest_training_image_finds_the_closest_one():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (5000, 8, 8, 3), dtype=np.uint8)
    picks = [4321, 17]
    samples = torch.from_numpy(train[picks]).permute(0, 3, 1, 2).float() / 127.5 - 1
    nearest = helpers.nearest_training_images(samples, train)
    assert np.array_equal(nearest.numpy(), train[picks])


def test_plots_draw_one_line_per_curve(tmp_path):
    history = [
        {"kind": "train", "step": s, "d_loss": 1.0, "g_loss": 2.0, "d_real": 0.6, "d_fake": 0.3}
        for s in (10, 20, 30)
    ]
    figure = helpers.plot_history(history)
    losses, outputs = figure.axes
    assert [len(line.get_xdata()) for line in losses.lines] == [3, 3]
    assert len(outputs.lines) == 3  # D(x), D(G(z)) and the 0.5 guide


@pytest.mark.parametrize("n_epochs", [3, 10])
def test_epoch_samples_show_at_most_six_spread_epochs(tmp_path, n_epochs):
    from PIL import Image

    (tmp_path / "samples").mkdir()
    for epoch in range(1, n_epochs + 1):
        Image.new("RGB", (8, 8)).save(tmp_path / "samples" / f"epoch_{epoch:03d}.png")
    titles = [ax.get_title() for ax in helpers.show_epoch_samples(tmp_path).axes]
    assert titles[0] == "epoch 1" and titles[-1] == f"epoch {n_epochs}"
    assert len(titles) == min(n_epochs, 6)


def test_settings_table_lists_every_parameter_with_its_value_and_meaning():
    config = TrainConfig(epochs=3, loss="hinge")
    rows = helpers.settings_table(config).splitlines()[2:]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == [
        setting.name.upper() for setting in fields(TrainConfig)
    ]
    epochs = "passes over the data (default: the data's recipe, 8 built in, 20 real)"
    assert f"| EPOCHS | 3 | {epochs} |" in rows
    assert "| LOSS | 'hinge' | the GAN objective |" in rows
