"""The DCGAN learns: a briefly trained generator draws clearly closer to the built-in faces.

The measure is a Frechet distance between Gaussians fitted to real and generated images,
each average-pooled to 4x4x3 features. It is computed here, from images, not from the
training losses, which say little about what a GAN draws.
"""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from facegan.config import TrainConfig
from facegan.data import load_faces
from facegan.images import to_float
from facegan.models import sample_images
from facegan.trainer import Trainer


def pooled_features(images: torch.Tensor) -> np.ndarray:
    return F.adaptive_avg_pool2d(images.float(), 4).flatten(1).double().numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # trace of sqrt(cov_a cov_b) from the eigenvalues of the product, which are real and >= 0
    eigenvalues = np.linalg.eigvals(cov_a @ cov_b)
    root_trace = np.sqrt(np.clip(eigenvalues.real, 0, None)).sum()
    return float(
        ((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * root_trace
    )


@pytest.mark.parametrize("seed", [0])
def test_a_short_training_run_draws_much_closer_to_the_real_faces(tmp_path, seed):
    faces = load_faces("synthetic", 16, n_images=2048, seed=seed, progress=False)
    config = TrainConfig(
        image_size=16,
        epochs=3,
        batch_size=32,
        conv_dim=16,
        z_size=32,
        seed=seed,
        log_every=16,
        out=str(tmp_path),
    )
    trainer = Trainer(config, faces)
    z = torch.randn(512, 32, generator=torch.Generator().manual_seed(123))
    untrained = sample_images(trainer.generator, z)
    trainer.fit(progress=False)
    trained = sample_images(trainer.generator, z)

    real = pooled_features(to_float(torch.from_numpy(np.array(faces.images[:512]))))
    before = frechet_distance(real, pooled_features(untrained))
    after = frechet_distance(real, pooled_features(trained))
    assert after < 0.7 * before, f"distance to real faces: before {before:.3f}, after {after:.3f}"
