"""The tiny training settings that the train, recipe and speed tests share."""

from facegan.config import TrainConfig

TINY_SETTINGS = dict(
    image_size=16, epochs=2, batch_size=16, z_size=8, conv_dim=4, n_samples=4, log_every=2
)


def tiny_config(out, **changes) -> TrainConfig:
    """A TrainConfig that trains in moments, writing to out; changes override any setting."""
    return TrainConfig(out=str(out), **(TINY_SETTINGS | changes))
