"""Tests for problem_unittests: right code passes every check, planted bugs fail it.

Right code is the reference package's and a learner's in either course version's shapes. Each
planted bug is a mistake learners make; the check must raise AssertionError with a message
that names the mistake. A stage still a stub gets one line saying so.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import problem_unittests as pu
from facegan.data import FaceDataset, load_faces, scale
from facegan.losses import fake_loss, real_loss
from facegan.models import Discriminator, Generator, build_models, weights_init_normal
from facegan.step import make_optimizers, train_step


@pytest.fixture(scope="module")
def faces() -> FaceDataset:
    return load_faces("synthetic", image_size=32, n_images=16, progress=False)


@pytest.fixture(scope="module")
def models() -> tuple[nn.Module, nn.Module]:
    return build_models(z_size=100, conv_dim=8)


def reference_calls(faces: FaceDataset, models: tuple[nn.Module, nn.Module]) -> dict:
    """Each check with the reference implementation as its arguments."""
    discriminator, generator = models
    d_optimizer, g_optimizer = make_optimizers(discriminator, generator)
    return {
        "test_dataset": (faces,),
        "test_scale": (scale,),
        "test_discriminator": (Discriminator,),
        "test_generator": (Generator,),
        "test_weights_init": (weights_init_normal,),
        "test_losses": (real_loss, fake_loss),
        "test_optimizers": (d_optimizer, g_optimizer, discriminator, generator),
        "test_training_step": (train_step,),
    }


@pytest.mark.parametrize("check", pu.CHECKS)
def test_reference_passes_and_prints_one_line(check, faces, models, capsys) -> None:
    getattr(pu, check)(*reference_calls(faces, models)[check])
    out = capsys.readouterr().out
    assert out.startswith(f"{check}: passed (")
    assert out.count("\n") == 1 and out.endswith(")\n")


@pytest.mark.parametrize("check", pu.CHECKS)
def test_checks_leave_random_state_and_threads_alone(check, faces, models) -> None:
    torch.manual_seed(123)
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    getattr(pu, check)(*reference_calls(faces, models)[check])
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.get_num_threads() == threads


def test_threads_are_restored_when_a_check_fails() -> None:
    threads = torch.get_num_threads()
    with pytest.raises(AssertionError):
        pu.test_generator(NoTanhGenerator)
    assert torch.get_num_threads() == threads


def test_every_public_check_is_tested() -> None:
    public = sorted(name for name in dir(pu) if name.startswith("test_"))
    assert public == sorted(pu.CHECKS)


def test_failure_message_lists_parameters() -> None:
    with pytest.raises(AssertionError) as info:
        pu.test_discriminator(SigmoidDiscriminator)
    message = str(info.value)
    assert message.startswith("test_discriminator: ")
    assert "\n  parameters: conv_dim=10, image_size=32, batch_size=16" in message


# --- test_dataset ---------------------------------------------------------------------------


class Mapped(torch.utils.data.Dataset):
    """The reference dataset with each item passed through fn(item, index)."""

    def __init__(self, dataset: Any, fn: Callable[[torch.Tensor, int], Any]) -> None:
        self.dataset, self.fn = dataset, fn

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.fn(self.dataset[index], index)


DATASET_BUGS = {
    "image-label tuple": (lambda x, i: (x, 0), "tuple"),
    "left in [0, 1]": (lambda x, i: (x + 1) / 2, "not scaled to \\[-1, 1\\]"),
    "out of range": (lambda x, i: x * 2, "out of range"),
    "channels last": (lambda x, i: x.permute(1, 2, 0), "channels last \\(HWC\\)"),
    "constant image": (lambda x, i: torch.full_like(x, -0.7), "constant image"),
    "not a power of two": (lambda x, i: x[:, :30, :30], "power of two"),
    "uint8": (lambda x, i: ((x + 1) * 127.5).to(torch.uint8), "dtype torch.uint8"),
    "numpy array": (lambda x, i: x.numpy(), "expected a torch tensor"),
    "batch axis": (lambda x, i: x[None], "expected \\[3, S, S\\]"),
    "lower half only": (lambda x, i: (x - 1) / 2, "lower half"),
}


@pytest.mark.parametrize("bug", DATASET_BUGS, ids=list(DATASET_BUGS))
def test_dataset_catches(bug, faces) -> None:
    fn, match = DATASET_BUGS[bug]
    with pytest.raises(AssertionError, match=match):
        pu.test_dataset(Mapped(faces, fn))


def test_dataset_catches_same_item_for_every_index(faces) -> None:
    with pytest.raises(AssertionError, match="same image for every index"):
        pu.test_dataset(Mapped(faces, lambda x, i: faces[0]))


def test_dataset_catches_empty() -> None:
    with pytest.raises(AssertionError, match="empty"):
        pu.test_dataset([])


# --- test_scale -----------------------------------------------------------------------------


def identity_scale(x, feature_range=(-1, 1)):
    return x


def reversed_scale(x, feature_range=(-1, 1)):
    low, high = feature_range
    return high - x * (high - low)


def fixed_range_scale(x, feature_range=(-1, 1)):
    return x * 2 - 1


def half_scale(x, feature_range=(-1, 1)):
    low, high = feature_range
    return x * (high - low) / 2 + low


def flattening_scale(x, feature_range=(-1, 1)):
    low, high = feature_range
    return (x * (high - low) + low).flatten()


SCALE_BUGS = {
    "identity": (identity_scale, "returned x unchanged"),
    "reversed": (reversed_scale, "is reversed"),
    "ignores feature_range": (fixed_range_scale, "ignores feature_range"),
    "off by a factor": (half_scale, "is wrong: it maps 0 -> -1 and 1 -> 0"),
    "changes the shape": (flattening_scale, "returned shape"),
}


@pytest.mark.parametrize("bug", SCALE_BUGS, ids=list(SCALE_BUGS))
def test_scale_catches(bug) -> None:
    fn, match = SCALE_BUGS[bug]
    with pytest.raises(AssertionError, match=match):
        pu.test_scale(fn)


# --- test_discriminator ---------------------------------------------------------------------


class SigmoidDiscriminator(Discriminator):
    def forward(self, images):
        return torch.sigmoid(super().forward(images))


class TanhDiscriminator(Discriminator):
    def forward(self, images):
        return torch.tanh(super().forward(images))


class BatchNormOnLogitsDiscriminator(Discriminator):
    """Fails on a batch of one in train mode."""

    def __init__(self, conv_dim=64, image_size=32):
        super().__init__(conv_dim, image_size)
        self.norm = nn.BatchNorm1d(1)

    def forward(self, images):
        return self.norm(super().forward(images))


class FixedBatchDiscriminator(Discriminator):
    def forward(self, images):
        return self.net(images).view(16, 1)


class SqueezedDiscriminator(Discriminator):
    def forward(self, images):
        return super().forward(images).squeeze(1)


class FixedWidthDiscriminator(Discriminator):
    def __init__(self, conv_dim=64, image_size=32):
        super().__init__(64, image_size)


class ConstantDiscriminator(Discriminator):
    def forward(self, images):
        return super().forward(torch.zeros_like(images))


DISCRIMINATOR_BUGS = {
    "final sigmoid": (SigmoidDiscriminator, "outputs look bounded"),
    "final tanh": (TanhDiscriminator, "outputs look bounded"),
    "BatchNorm1d on logits": (BatchNormOnLogitsDiscriminator, "batch of 1 .* raised ValueError"),
    "fixed batch size view": (FixedBatchDiscriminator, "batch of 1 .* raised RuntimeError"),
    "output (N,)": (SqueezedDiscriminator, "expected \\(1, 1\\) or \\(1, 1, 1, 1\\): one logit"),
    "ignores conv_dim": (FixedWidthDiscriminator, "conv_dim is ignored"),
    "ignores the image": (ConstantDiscriminator, "same output .* for 16 different images"),
}


@pytest.mark.parametrize("bug", DISCRIMINATOR_BUGS, ids=list(DISCRIMINATOR_BUGS))
def test_discriminator_catches(bug) -> None:
    cls, match = DISCRIMINATOR_BUGS[bug]
    with pytest.raises(AssertionError, match=match):
        pu.test_discriminator(cls)


class Discriminator32Only(Discriminator):
    def __init__(self, conv_dim=64):
        super().__init__(conv_dim)


def test_discriminator_without_image_size_skips_64(capsys) -> None:
    pu.test_discriminator(Discriminator32Only)
    assert "image_size 64=skipped" in capsys.readouterr().out


# --- test_generator -------------------------------------------------------------------------


class NoTanhGenerator(Generator):
    def __init__(self, z_size=100, conv_dim=64, image_size=32):
        super().__init__(z_size, conv_dim, image_size)
        self.net[-1] = nn.Identity()


class SigmoidGenerator(Generator):
    def __init__(self, z_size=100, conv_dim=64, image_size=32):
        super().__init__(z_size, conv_dim, image_size)
        self.net[-1] = nn.Sigmoid()


class FixedZGenerator(Generator):
    def __init__(self, z_size=100, conv_dim=64, image_size=32):
        super().__init__(100, conv_dim, image_size)


class FixedWidthGenerator(Generator):
    def __init__(self, z_size=100, conv_dim=64, image_size=32):
        super().__init__(z_size, 64, image_size)


class IgnoresZGenerator(Generator):
    def forward(self, z):
        return super().forward(torch.zeros_like(z))


class OwnNoiseGenerator(Generator):
    def forward(self, z):
        return super().forward(torch.randn_like(z))


class BatchNormOnZGenerator(Generator):
    """Fails on a batch of one in train mode."""

    def __init__(self, z_size=100, conv_dim=64, image_size=32):
        super().__init__(z_size, conv_dim, image_size)
        self.norm = nn.BatchNorm1d(z_size)

    def forward(self, z):
        return super().forward(self.norm(z.reshape(len(z), -1)))


class BigGenerator(Generator):
    def __init__(self, z_size=100, conv_dim=64, image_size=32):
        super().__init__(z_size, conv_dim, 64)


GENERATOR_BUGS = {
    "no tanh": (NoTanhGenerator, "outside \\[-1, 1\\]: the last layer needs a tanh"),
    "sigmoid instead of tanh": (SigmoidGenerator, "range is not \\[-1, 1\\]"),
    "ignores z_size": (FixedZGenerator, "Generator\\(25, 10, image_size=32\\): .* takes neither"),
    "ignores conv_dim": (FixedWidthGenerator, "conv_dim is ignored"),
    "ignores z": (IgnoresZGenerator, "ignores z"),
    "draws its own noise": (OwnNoiseGenerator, "function of z alone"),
    "BatchNorm1d on z": (BatchNormOnZGenerator, "shape \\(1, 100\\) raised ValueError"),
    "wrong image size": (BigGenerator, "expected \\(1, 3, 32, 32\\)"),
}


@pytest.mark.parametrize("bug", GENERATOR_BUGS, ids=list(GENERATOR_BUGS))
def test_generator_catches(bug) -> None:
    cls, match = GENERATOR_BUGS[bug]
    with pytest.raises(AssertionError, match=match):
        pu.test_generator(cls)


# --- a learner's code in either course version's shapes ---------------------------------------


class FirstVersionDiscriminator(nn.Module):
    """The first course version's D: strided convs, then flatten and Linear to (N, 1)."""

    def __init__(self, conv_dim=32):
        super().__init__()
        self.conv_dim = conv_dim
        self.conv1 = nn.Conv2d(3, conv_dim, 4, 2, 1)
        self.conv2 = nn.Sequential(
            nn.Conv2d(conv_dim, conv_dim * 2, 4, 2, 1), nn.BatchNorm2d(conv_dim * 2)
        )
        self.conv3 = nn.Sequential(
            nn.Conv2d(conv_dim * 2, conv_dim * 4, 4, 2, 1), nn.BatchNorm2d(conv_dim * 4)
        )
        self.fc = nn.Linear(conv_dim * 4 * 4 * 4, 1)

    def forward(self, x):
        x = F.leaky_relu(self.conv1(x), 0.2)
        x = F.leaky_relu(self.conv2(x), 0.2)
        x = F.leaky_relu(self.conv3(x), 0.2)
        return self.fc(x.view(-1, self.conv_dim * 4 * 4 * 4))


class FirstVersionGenerator(nn.Module):
    """The first course version's G: flat z, Linear, view to 4x4, then transposed convs."""

    def __init__(self, z_size, conv_dim=32):
        super().__init__()
        self.conv_dim = conv_dim
        self.fc = nn.Linear(z_size, conv_dim * 4 * 4 * 4)
        self.t_conv1 = nn.ConvTranspose2d(conv_dim * 4, conv_dim * 2, 4, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(conv_dim * 2)
        self.t_conv2 = nn.ConvTranspose2d(conv_dim * 2, conv_dim, 4, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(conv_dim)
        self.t_conv3 = nn.ConvTranspose2d(conv_dim, 3, 4, 2, 1)

    def forward(self, x):
        x = self.fc(x).view(-1, self.conv_dim * 4, 4, 4)
        x = F.relu(self.bn1(self.t_conv1(x)))
        x = F.relu(self.bn2(self.t_conv2(x)))
        return torch.tanh(self.t_conv3(x))


class LaterVersionDiscriminator(nn.Module):
    """The later course version's D: no arguments, 64 px in, a final 4x4 conv to (N, 1, 1, 1)."""

    def __init__(self):
        super().__init__()
        layers = [nn.Conv2d(3, 32, 4, 2, 1), nn.LeakyReLU(0.2)]
        for c_in, c_out in ((32, 64), (64, 128), (128, 256)):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers, nn.Conv2d(256, 1, 4, 1, 0))

    def forward(self, x):
        return self.net(x)


class LaterVersionGenerator(nn.Module):
    """The later course version's G: Generator(latent_dim), z (N, latent_dim, 1, 1) to 64 px."""

    def __init__(self, latent_dim):
        super().__init__()
        layers = [nn.ConvTranspose2d(latent_dim, 256, 4, 1, 0), nn.BatchNorm2d(256), nn.ReLU()]
        for c_in, c_out in ((256, 128), (128, 64), (64, 32)):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.ConvTranspose2d(32, 3, 4, 2, 1), nn.Tanh())

    def forward(self, x):
        return self.net(x)


class FourDScoreDiscriminator(Discriminator):
    """The reference D without its final reshape: scores (N, 1, 1, 1)."""

    def forward(self, images):
        return self.net(images)


def test_first_version_networks_pass(capsys) -> None:
    pu.test_discriminator(FirstVersionDiscriminator)
    pu.test_generator(FirstVersionGenerator)
    out = capsys.readouterr().out
    assert "outputs=raw logits (N, 1)" in out
    assert "z=flat (N, z_size)" in out


def test_later_version_networks_pass_at_64_px(capsys) -> None:
    pu.test_discriminator(LaterVersionDiscriminator, image_size=64)
    pu.test_generator(LaterVersionGenerator, z_size=128, image_size=64)
    out = capsys.readouterr().out
    assert "conv_dims=not a parameter, image_size=64" in out
    assert "outputs=raw logits (N, 1, 1, 1)" in out
    assert "(z_size, conv_dim)=((128,), (25,)), image_size=64" in out
    assert "z=4d (N, z_size, 1, 1)" in out


def test_later_version_discriminator_at_the_wrong_size_names_the_crash() -> None:
    with pytest.raises(AssertionError, match="LaterVersionDiscriminator\\(\\) on a batch of 1"):
        pu.test_discriminator(LaterVersionDiscriminator)


def test_reference_networks_pass_at_64_px() -> None:
    pu.test_discriminator(Discriminator, image_size=64)
    pu.test_generator(Generator, image_size=64)


def test_discriminator_scoring_n_1_1_1_passes(capsys) -> None:
    pu.test_discriminator(FourDScoreDiscriminator)
    assert "outputs=raw logits (N, 1, 1, 1)" in capsys.readouterr().out


def test_z_shape_for_finds_the_z_a_generator_takes() -> None:
    assert pu.z_shape_for(FirstVersionGenerator(100), 100) == "flat"
    assert pu.z_shape_for(LaterVersionGenerator(128), 128) == "4d"
    assert pu.z_shape_for(Generator(100, 8), 100) == "flat"  # takes both: flat is enough


def test_z_shape_for_leaves_the_generator_and_random_state_alone() -> None:
    generator = LaterVersionGenerator(16).train()
    statistics = copy.deepcopy(generator.state_dict())
    state = torch.random.get_rng_state()
    pu.z_shape_for(generator, 16)
    assert generator.training
    assert all(torch.equal(v, generator.state_dict()[k]) for k, v in statistics.items())
    assert torch.equal(torch.random.get_rng_state(), state)


def test_z_shape_for_names_both_errors_when_neither_shape_works() -> None:
    with pytest.raises(
        ValueError, match="neither z of shape \\(2, 25\\) \\(.+\\) nor \\(2, 25, 1, 1\\)"
    ):
        pu.z_shape_for(Generator(100, 8), 25)


def test_dataset_at_another_image_size_fails(faces) -> None:
    pu.test_dataset(faces, image_size=32)
    with pytest.raises(AssertionError, match="expected 64x64, the image_size you train at"):
        pu.test_dataset(faces, image_size=64)


# --- a stage still a stub --------------------------------------------------------------------


def stub(*args, **kwargs):
    raise NotImplementedError("write this stage")


class StubDataset(torch.utils.data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, index):
        raise NotImplementedError


class StubInitNetwork(nn.Module):
    def __init__(self, *sizes, **options):
        super().__init__()
        raise NotImplementedError("define the layers")


class IdentityForwardNetwork(nn.Module):
    """The later course's stub: layers defined, forward returns its input."""

    def __init__(self, *sizes, **options):
        super().__init__()
        self.layer = nn.Linear(1, 1)

    def forward(self, x):
        return x


class NoForwardNetwork(nn.Module):
    def __init__(self, *sizes, **options):
        super().__init__()
        self.layer = nn.Linear(1, 1)


STUBS = {
    "dataset[i] raises": ("test_dataset", (StubDataset(),)),
    "dataset is None": ("test_dataset", (None,)),
    "scale": ("test_scale", (stub,)),
    "D.__init__ raises": ("test_discriminator", (StubInitNetwork,)),
    "D.forward returns x": ("test_discriminator", (IdentityForwardNetwork,)),
    "D has no forward": ("test_discriminator", (NoForwardNetwork,)),
    "G.__init__ raises": ("test_generator", (StubInitNetwork,)),
    "G.forward returns z": ("test_generator", (IdentityForwardNetwork,)),
    "G has no forward": ("test_generator", (NoForwardNetwork,)),
    "weights_init_normal": ("test_weights_init", (stub,)),
    "losses": ("test_losses", (stub, stub)),
    "optimizers are None": ("test_optimizers", (None, None)),
    "train_step": ("test_training_step", (stub,)),
}


def test_every_check_has_a_stub_case() -> None:
    assert {check for check, _ in STUBS.values()} == set(pu.CHECKS)


@pytest.mark.parametrize("stage", STUBS, ids=list(STUBS))
def test_stub_gets_one_line_saying_what_to_write(stage) -> None:
    check, args = STUBS[stage]
    with pytest.raises(pu.StageNotWritten) as info:
        getattr(pu, check)(*args)
    message = str(info.value)
    assert re.fullmatch(f"{check}: .+ (is|are) not written yet: .+\\.", message)  # one line
    assert info.value._render_traceback_() == [message]
    assert info.value.__suppress_context__  # the stub's NotImplementedError is not chained


def test_stub_shows_one_line_and_no_traceback_in_ipython(tmp_path) -> None:
    cell = (
        "import problem_unittests as tests\n"
        "def scale(x, feature_range=(-1, 1)):\n"
        "    raise NotImplementedError('map x onto feature_range')\n"
        "tests.test_scale(scale)\n"
    )
    code = (
        "from IPython.core.interactiveshell import InteractiveShell\n"
        f"InteractiveShell.instance().run_cell({cell!r})\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "IPYTHONDIR": str(tmp_path)},  # no profile written in the home folder
        cwd=Path(__file__).parents[1],
        check=True,
    )
    assert shown.stdout.strip() == f"test_scale: {pu.STAGES['test_scale']}."


# --- test_weights_init ----------------------------------------------------------------------

LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def normal_init(mean: float, std: float, layers: tuple[type, ...] = LAYERS) -> Callable:
    def init(m: nn.Module) -> None:
        if isinstance(m, layers):
            nn.init.normal_(m.weight, mean, std)

    return init


def uniform_init(m: nn.Module) -> None:
    if isinstance(m, LAYERS):
        nn.init.uniform_(m.weight, -0.02 * 3**0.5, 0.02 * 3**0.5)  # std 0.02, but uniform


def batchnorm_zero_init(m: nn.Module) -> None:
    if isinstance(m, LAYERS + (nn.BatchNorm2d,)):
        nn.init.normal_(m.weight, 0.0, 0.02)


def every_module_init(m: nn.Module) -> None:
    m.weight.data.normal_(0.0, 0.02)


WEIGHTS_INIT_BUGS = {
    "std 1": (normal_init(0.0, 1.0), "std (0\\.9|1\\.0)\\d*; expected 0\\.02"),
    "std 0.2": (normal_init(0.0, 0.2), "std 0\\.(1[89]|2[01])\\d*; expected 0\\.02"),
    "left as default": (lambda m: None, "Conv2d \\(layer 0\\) .* default init"),
    "Conv2d only": (normal_init(0.0, 0.02, (nn.Conv2d,)), "ConvTranspose2d.* default init"),
    "uniform": (uniform_init, "do not look normal"),
    "mean and std swapped": (normal_init(0.02, 0.02), "mean 0\\.0(1[89]|2[01])\\d*; .* swapped"),
    "BatchNorm scale to 0": (batchnorm_zero_init, "BatchNorm scale"),
    "crashes on layers without weights": (every_module_init, "raised AttributeError"),
}


@pytest.mark.parametrize("bug", WEIGHTS_INIT_BUGS, ids=list(WEIGHTS_INIT_BUGS))
def test_weights_init_catches(bug) -> None:
    fn, match = WEIGHTS_INIT_BUGS[bug]
    with pytest.raises(AssertionError, match=match):
        pu.test_weights_init(fn)


# --- test_losses ----------------------------------------------------------------------------


def bce_logits(d_out, label, reduction="mean"):
    return F.binary_cross_entropy_with_logits(
        d_out, torch.full_like(d_out, label), reduction=reduction
    )


LOSS_BUGS = {
    "labels swapped": (
        lambda d_out, smooth=False: bce_logits(d_out, 0.0),
        lambda d_out: bce_logits(d_out, 1.0),
        "labels look swapped",
    ),
    "BCELoss on logits": (
        lambda d_out: nn.BCELoss()(d_out, torch.ones_like(d_out)),
        lambda d_out: nn.BCELoss()(d_out, torch.zeros_like(d_out)),
        "raised RuntimeError.*BCELoss needs probabilities",
    ),
    "expects probabilities": (
        lambda d_out: -torch.log(d_out).mean(),
        lambda d_out: -torch.log(1 - d_out).mean(),
        "treat d_out as probabilities",
    ),
    "sigmoid twice": (
        lambda d_out: bce_logits(torch.sigmoid(d_out), 1.0),
        lambda d_out: bce_logits(torch.sigmoid(d_out), 0.0),
        "sigmoid is applied twice",
    ),
    "sum over the batch": (
        lambda d_out: bce_logits(d_out, 1.0, "sum"),
        lambda d_out: bce_logits(d_out, 0.0, "sum"),
        "sum over the batch",
    ),
    "returns a float": (
        lambda d_out: bce_logits(d_out, 1.0).item(),
        lambda d_out: bce_logits(d_out, 0.0).item(),
        "returned a float; expected a tensor holding one number",
    ),
    "detached": (
        lambda d_out: bce_logits(d_out, 1.0).detach(),
        lambda d_out: bce_logits(d_out, 0.0).detach(),
        "no gradient",
    ),
    "fails on a batch of one (squeeze)": (
        lambda d_out: F.binary_cross_entropy_with_logits(d_out.squeeze(), torch.ones(len(d_out))),
        lambda d_out: F.binary_cross_entropy_with_logits(d_out.squeeze(), torch.zeros(len(d_out))),
        "a batch of one, shape \\(1, 1\\) raised ValueError",
    ),
    "smooth ignored": (
        lambda d_out, smooth=False: bce_logits(d_out, 1.0),
        fake_loss,
        "smooth=True is ignored",
    ),
    "always smooth": (
        lambda d_out, smooth=False: bce_logits(d_out, 0.9),
        fake_loss,
        "Label 0.9 is used without smooth=True",
    ),
    "smooth to the wrong label": (
        lambda d_out, smooth=False: bce_logits(d_out, 0.1 if smooth else 1.0),
        fake_loss,
        "real_loss\\(d_out, smooth=True\\).*label 0.9",
    ),
}


@pytest.mark.parametrize("bug", LOSS_BUGS, ids=list(LOSS_BUGS))
def test_losses_catches(bug) -> None:
    real, fake, match = LOSS_BUGS[bug]
    with pytest.raises(AssertionError, match=match):
        pu.test_losses(real, fake)


def test_losses_without_smooth_skip_it(capsys) -> None:
    pu.test_losses(lambda d_out: real_loss(d_out), fake_loss)
    assert "smooth=True=skipped" in capsys.readouterr().out


def four_d_bce(d_out, label):
    """A loss written for a D that scores (N, 1, 1, 1): its labels have that shape."""
    return F.binary_cross_entropy_with_logits(d_out, torch.full((len(d_out), 1, 1, 1), label))


def test_losses_for_n_1_1_1_scores_pass(capsys) -> None:
    pu.test_losses(lambda d_out: four_d_bce(d_out, 1.0), lambda d_out: four_d_bce(d_out, 0.0))
    assert "logits shape=(16, 1, 1, 1) and (1, 1, 1, 1)" in capsys.readouterr().out


# --- test_optimizers ------------------------------------------------------------------------


def adam(model: nn.Module, lr: float = 2e-4, betas=(0.5, 0.999)) -> torch.optim.Adam:
    return torch.optim.Adam(model.parameters(), lr=lr, betas=betas)


OPTIMIZER_BUGS = {
    "lr too high": (lambda d, g: (adam(d, lr=0.01), adam(g)), "d_optimizer has lr 0.01"),
    "lr too low": (lambda d, g: (adam(d), adam(g, lr=1e-7)), "g_optimizer has lr 1e-07"),
    "Adam's default betas": (
        lambda d, g: (adam(d, betas=(0.9, 0.999)), adam(g, betas=(0.9, 0.999))),
        "beta1 0.9 .*expected 0.5",
    ),
    "swapped": (lambda d, g: (adam(g), adam(d)), "optimizers are swapped"),
    "shared parameters": (lambda d, g: (adam(d), adam(d)), "share .* parameter tensors"),
    "one optimizer for both": (
        lambda d, g: (lambda o: (o, o))(adam(d)),
        "the same object",
    ),
    "part of D only": (
        lambda d, g: (torch.optim.Adam(d.net[0].parameters(), 2e-4, (0.5, 0.999)), adam(g)),
        "d_optimizer is missing",
    ),
    "D and G in one": (
        lambda d, g: (
            torch.optim.Adam([*d.parameters(), *g.net[0].parameters()], 2e-4, (0.5, 0.999)),
            torch.optim.Adam(g.net[1:].parameters(), 2e-4, (0.5, 0.999)),
        ),
        "d_optimizer holds 1 parameter tensors that are not the discriminator's",
    ),
    "not an optimizer": (lambda d, g: (d, g), "expected a torch.optim.Optimizer"),
}


@pytest.mark.parametrize("bug", OPTIMIZER_BUGS, ids=list(OPTIMIZER_BUGS))
def test_optimizers_catches(bug, models) -> None:
    make, match = OPTIMIZER_BUGS[bug]
    discriminator, generator = models
    d_optimizer, g_optimizer = make(discriminator, generator)
    with pytest.raises(AssertionError, match=match):
        pu.test_optimizers(d_optimizer, g_optimizer, discriminator, generator)


def test_optimizers_warn_on_unusual_beta1(models) -> None:
    discriminator, generator = models
    d_optimizer, g_optimizer = make_optimizers(discriminator, generator, betas=(0.7, 0.999))
    with pytest.warns(UserWarning, match="beta1 0.7; DCGAN uses 0.5"):
        pu.test_optimizers(d_optimizer, g_optimizer)


def test_optimizers_without_models(models, capsys) -> None:
    pu.test_optimizers(*make_optimizers(*models))
    assert "no models given" in capsys.readouterr().out


# --- test_training_step ---------------------------------------------------------------------


def buggy_step(
    discriminator,
    generator,
    d_optimizer,
    g_optimizer,
    real_images,
    z,
    *,
    d_step=True,
    g_step=True,
    d_zero=True,
    g_zero=True,
    zero_after_backward=False,
    d_labels=(1.0, 0.0),
    g_label=1.0,
    stats="probabilities",
    loss=None,
):
    """The reference step with one mistake switched on by the keyword arguments."""
    loss = loss or bce_logits
    fakes = generator(z)
    d_real, d_fake = discriminator(real_images), discriminator(fakes.detach())
    d_loss = loss(d_real, d_labels[0]) + loss(d_fake, d_labels[1])
    if d_zero:
        d_optimizer.zero_grad()
    d_loss.backward()
    if zero_after_backward:
        d_optimizer.zero_grad()
    if d_step:
        d_optimizer.step()

    g_loss = loss(discriminator(fakes), g_label)
    if g_zero:
        g_optimizer.zero_grad()
    g_loss.backward()
    if g_step:
        g_optimizer.step()

    p_real, p_fake = torch.sigmoid(d_real).mean(), torch.sigmoid(d_fake).mean()
    result = {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}
    if stats == "probabilities":
        result.update(d_real=p_real, d_fake=p_fake)
    elif stats == "logits":
        result.update(d_real=d_real.mean(), d_fake=d_fake.mean())
    elif stats == "swapped":
        result.update(d_real=p_fake, d_fake=p_real)
    elif stats == "tuple":
        return d_loss, g_loss
    return result


STEP_BUGS = {
    "reference-like step is fine": ({}, None),
    "no d_optimizer.step()": ({"d_step": False}, "discriminator's parameters did not change"),
    "no g_optimizer.step()": ({"g_step": False}, "generator's parameters did not change"),
    "zero_grad after backward": (
        {"zero_after_backward": True},
        "discriminator's parameters did not change",
    ),
    "no d_optimizer.zero_grad()": ({"d_zero": False}, "d_optimizer.zero_grad\\(\\) before"),
    "no g_optimizer.zero_grad()": ({"g_zero": False}, "g_optimizer.zero_grad\\(\\) before"),
    "D labels swapped": ({"d_labels": (0.0, 1.0)}, "discriminator step made D worse"),
    "G trained towards fake": ({"g_label": 0.0}, "generator step made D less fooled"),
    "stats are logits": ({"stats": "logits"}, "d_real.*outside \\[0, 1\\]"),
    "stats swapped": ({"stats": "swapped"}, "d_real and d_fake look swapped"),
    "missing stats": ({"stats": "none"}, "missing keys \\['d_real', 'd_fake'\\]"),
    "returns a tuple": ({"stats": "tuple"}, "returned a tuple; expected a dict"),
}


def test_training_step_with_losses_for_n_1_1_1_scores_passes(capsys) -> None:
    pu.test_training_step(functools.partial(buggy_step, loss=four_d_bce))
    assert "D scores=(N, 1, 1, 1)" in capsys.readouterr().out


@pytest.mark.parametrize("bug", STEP_BUGS, ids=list(STEP_BUGS))
def test_training_step_catches(bug) -> None:
    options, match = STEP_BUGS[bug]
    step = functools.partial(buggy_step, **options)
    if match is None:  # the harness itself is right: without a bug the check passes
        pu.test_training_step(step)
        return
    with pytest.raises(AssertionError, match=match):
        pu.test_training_step(step)
