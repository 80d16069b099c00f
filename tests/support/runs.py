"""The tests' tiny training runs: their settings, and the faces they train on.

The faces are a module-scoped fixture; a test module takes it in by binding it at its top level
(`faces = runs.faces`), where pytest looks for fixtures.
"""

import pytest

from facegan.config import TrainConfig
from facegan.data import FaceDataset, load_faces

TINY_SETTINGS = dict(
    image_size=16, epochs=2, batch_size=16, z_size=8, conv_dim=4, n_samples=4, log_every=2
)


def tiny_config(out, **changes) -> TrainConfig:
    """A TrainConfig that trains in moments, writing to out; changes override any setting."""
    return TrainConfig(out=str(out), **(TINY_SETTINGS | changes))


@pytest.fixture(scope="module")
def faces() -> FaceDataset:
    """96 built-in faces at 16 px: six batches of the tiny settings, decoded once a module."""
    return load_faces("synthetic", 16, n_images=96, progress=False)
