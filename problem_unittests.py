"""Checks for each stage of the notebook: run them on your own implementations.

Each check prints one line, "test_x: passed (...)", or raises CheckFailure (an AssertionError)
saying what is wrong, what was expected and the sizes it used. A stage still a stub (raising
NotImplementedError) gets one line saying what to write, with no traceback in Jupyter. Your
code is judged by what it does, with torch and numpy only, on small inputs drawn with fixed
seeds on one CPU thread; torch's random state and thread count are restored afterwards.

    test_dataset(dataset, image_size=None)      items: float tensors [3, S, S] in [-1, 1]
    test_scale(scale)                           [0, 1] mapped linearly onto feature_range
    test_discriminator(Discriminator, image_size=32)       a raw logit per image, N=1 included
    test_generator(Generator, z_size=100, image_size=32)   z, flat or 4d, to images in [-1, 1]
    test_weights_init(weights_init_normal)      conv and linear weights from N(0, 0.02)
    test_losses(real_loss, fake_loss)           binary cross-entropy on logits, batch mean
    test_optimizers(d_optimizer, g_optimizer, D, G)        one Adam per network, DCGAN settings
    test_training_step(train_step)              one D step, then one G step, done right

z_shape_for(generator, z_size) says which z a generator takes, so training can feed it that.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# The checks in the order the notebook calls them, each with what a stub still has to do.
STAGES = {
    "test_dataset": "the dataset is not written yet: return each image alone, a float tensor "
    "[3, S, S] scaled to [-1, 1]",
    "test_scale": "scale is not written yet: map x from [0, 1] onto feature_range, "
    "x * (high - low) + low",
    "test_discriminator": "the Discriminator is not written yet: define its layers in __init__ "
    "and a forward that maps images (N, 3, S, S) to one raw logit per image",
    "test_generator": "the Generator is not written yet: define its layers in __init__ and a "
    "forward that maps z to images (N, 3, S, S) through a final tanh",
    "test_weights_init": "weights_init_normal is not written yet: draw the weights of Conv2d, "
    "ConvTranspose2d and Linear layers from N(0, 0.02)",
    "test_losses": "real_loss and fake_loss are not written yet: return the mean "
    "BCEWithLogitsLoss of d_out against label 1 (real) or 0 (fake)",
    "test_optimizers": "the optimizers are not written yet: one torch.optim.Adam per network, "
    "lr=0.0002, betas=(0.5, 0.999)",
    "test_training_step": "train_step is not written yet: update D on real and fake images, then "
    "G, and return d_loss, g_loss, d_real and d_fake",
}
CHECKS = tuple(STAGES)
# One logit per image: (N, 1), or (N, 1, 1, 1) straight out of a final 4x4 convolution.
SCORE_SHAPES = ((1,), (1, 1, 1))
# z as the first course version feeds it (a Linear layer first), and as the later one does.
Z_SHAPES = {"flat": (), "4d": (1, 1)}
SEED = 0
RANGE_TOLERANCE = 1e-5  # the rounding a float32 tanh or a [-1, 1] image may show
BATCH_OF_ONE = (
    "A batch of 1 must work in train mode (an epoch's last batch can be that small): avoid "
    "BatchNorm1d on a flat layer or the output, and views with a fixed batch size."
)
STEP_CALL = "train_step(discriminator, generator, d_optimizer, g_optimizer, real_images, z)"
STEP_KEYS = ("d_loss", "g_loss", "d_real", "d_fake")
STEP_LR = 2e-4


class CheckFailure(AssertionError):
    """A check's verdict: what is wrong, what was expected, and the parameters used."""


class StageNotWritten(CheckFailure):
    """The stage is still a stub: one line, and no traceback."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this in place of the traceback
        return [str(self)]


# --- shared machinery -------------------------------------------------------------------------


def _describe(values: dict[str, object]) -> str:
    return ", ".join(f"{name}={value}" for name, value in values.items()) or "none"


def _kind(value: object) -> str:
    shape = getattr(value, "shape", None)
    return f"a {type(value).__name__}" if shape is None else f"shape {tuple(shape)}"


class _Check:
    """One check's name and the parameters it ran with, which every failure reports."""

    def __init__(self, name: str, **params: object) -> None:
        self.name, self.params = name, params

    def using(self, **params: object) -> _Check:
        return _Check(self.name, **{**self.params, **params})

    def error(self, problem: str) -> CheckFailure:
        return CheckFailure(f"{self.name}: {problem}\n  parameters: {_describe(self.params)}")

    def require(self, ok: object, problem: str) -> None:
        if not ok:
            raise self.error(problem)

    def not_written(self) -> NoReturn:
        raise StageNotWritten(f"{self.name}: {STAGES[self.name]}.") from None

    def run(self, what: str, function: Callable[..., Any], *args: Any, hint: str = "") -> Any:
        """function(*args), the learner's code: a stub or an exception becomes a failure."""
        try:
            return function(*args)
        except NotImplementedError:
            self.not_written()
        except Exception as error:
            problem = f"{what} raised {type(error).__name__}: {error}"
            raise self.error(f"{problem}. {hint}" if hint else problem) from error

    def forward(
        self, model: nn.Module, what: str, inputs: torch.Tensor, shapes: list, *, meaning: str = ""
    ) -> Any:
        """model(inputs): a finite tensor of one of shapes. A forward returning x is a stub."""
        output = self.run(what, model, inputs, hint=BATCH_OF_ONE if len(inputs) == 1 else "")
        if output is inputs:
            self.not_written()
        self.require(
            isinstance(output, torch.Tensor) and tuple(output.shape) in shapes,
            f"{what} gave {_kind(output)}; expected {' or '.join(map(str, shapes))}{meaning}.",
        )
        self.require(torch.isfinite(output).all(), f"{what} gave NaN or inf.")
        return output.detach()

    def passed(self, **shown: object) -> None:
        print(f"{self.name}: passed ({_describe(shown)})")


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Fix torch's CPU random state inside the block; the caller's state comes back after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _deterministic(check: Callable[..., None]) -> Callable[..., None]:
    """Run a check on one CPU thread under a fixed seed, both restored afterwards.

    The networks are small: more threads only add overhead, and one makes every sum repeatable.
    """

    @functools.wraps(check)
    def run(*args: Any, **kwargs: Any) -> None:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with _seeded(SEED):
                check(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return run


def _accepts(function: Callable[..., Any], name: str) -> bool:
    with contextlib.suppress(TypeError, ValueError):  # some callables have no signature
        return name in inspect.signature(function).parameters
    return False


def _n_sizes(cls: Callable[..., Any]) -> int:
    """How many sizes cls takes positionally, image_size aside: Generator(z_size, conv_dim): 2."""
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return 2
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return 2
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in kinds and p.name != "image_size" for p in parameters)


def _build(c: _Check, cls: Callable[..., Any], sizes: tuple, image_size: int) -> tuple:
    """cls(*sizes) in train mode, image_size passed where cls takes it; and the call as text."""
    options = {"image_size": image_size} if _accepts(cls, "image_size") else {}
    arguments = [*map(str, sizes), *(f"{key}={value}" for key, value in options.items())]
    call = f"{getattr(cls, '__name__', 'model')}({', '.join(arguments)})"
    model = c.run(call, lambda: cls(*sizes, **options))
    c.require(isinstance(model, nn.Module), f"{call} gave {_kind(model)}; expected an nn.Module.")
    return model.train(), call


def _n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _first_that_runs(attempt: Callable[[Any], object], options: Iterable) -> tuple[Any, list[str]]:
    """The first option attempt(option) runs on, or None, and the errors it raised before.

    A stub goes on up: it is not a matter of shapes.
    """
    errors = []
    for option in options:
        try:
            attempt(option)
        except (NotImplementedError, StageNotWritten):
            raise
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")
        else:
            return option, errors
    return None, errors


def _push_output(
    model: nn.Module, inputs: torch.Tensor, target: float, statistic: Callable = torch.mean
) -> float:
    """Train a copy of model with Adam to move its mean output towards target until
    statistic(output) passes it; return the statistic where it stopped.

    This tells a bounded output (sigmoid, tanh) from an unbounded one whatever the initial
    weights: a bounded output can never cross its bound.
    """
    model, sign = copy.deepcopy(model), 1.0 if target > 0 else -1.0
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        output = model(inputs)
        reached = float(statistic(output.detach()))
        if sign * reached > sign * target:
            break
        optimizer.zero_grad()
        (-sign * output.mean()).backward()
        optimizer.step()
    return reached


def _bce(logits: torch.Tensor, label: float) -> float:
    return float(F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label)))


# --- data -------------------------------------------------------------------------------------


@_deterministic
def test_dataset(dataset: Any, n_items: int = 8, *, image_size: int | None = None) -> None:
    """Items are bare float tensors [3, S, S] in [-1, 1], S a power of two (or image_size)."""
    c = _Check("test_dataset")
    if dataset is None:
        c.not_written()
    c.require(
        hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"),
        f"a {type(dataset).__name__} has no len() or indexing; expected a torch Dataset.",
    )
    size = c.run("len(dataset)", len, dataset)
    c = c.using(len=size)
    c.require(size > 0, "the dataset is empty: check the data path or n_images.")
    # Items spread over the whole dataset, the same ones every run.
    indices = sorted({int(i) for i in np.linspace(0, size - 1, n_items)})
    c = c.using(**{"indices checked": indices})
    items = [_checked_item(c, dataset, index) for index in indices]
    shapes = sorted({tuple(item.shape) for item in items})
    c.require(len(shapes) == 1, f"items have different shapes {shapes}.")
    c = c.using(image_size=shapes[0][-1])
    c.require(
        image_size in (None, shapes[0][-1]),
        f"the images are {shapes[0][1:]}; expected {image_size}x{image_size}, the image_size "
        "you train at: resize them to it in the transform.",
    )
    low, high = min(float(item.min()) for item in items), max(float(item.max()) for item in items)
    c = c.using(**{"value range": f"[{low:.3f}, {high:.3f}]"})
    # Any real photo has dark pixels: if none of several images goes below -0.5, the values
    # were left in [0, 1], while the generator's tanh gives [-1, 1].
    c.require(
        low < -0.5,
        f"the images are not scaled to [-1, 1]: the smallest value of {len(items)} items is "
        f"{low:.3f}, expected below -0.5. Values in [0, 1] mean scale() (x * 2 - 1) is missing.",
    )
    c.require(
        high > 0,
        f"the images use only the lower half of [-1, 1] (largest value {high:.3f}): check how "
        "the values are scaled.",
    )
    c.require(
        len(items) == 1 or not all(torch.equal(items[0], item) for item in items[1:]),
        "dataset[i] is the same image for every index checked: __getitem__ ignores its index.",
    )
    c.passed(**c.params)


def _checked_item(c: _Check, dataset: Any, index: int) -> torch.Tensor:
    """dataset[index], checked to be a float [3, S, S] tensor in [-1, 1] that is not constant."""
    name = f"dataset[{index}]"
    item = c.run(name, dataset.__getitem__, index)
    if isinstance(item, tuple | list):
        raise c.error(
            f"{name} is a {type(item).__name__} of {len(item)} items (an (image, label) pair?); "
            "expected the image tensor alone, [3, S, S]."
        )
    c.require(
        isinstance(item, torch.Tensor),
        f"{name} has type {type(item).__name__}; expected a torch tensor [3, S, S].",
    )
    item, shape = item.detach(), tuple(item.shape)
    c.require(item.is_floating_point(), f"{name} has dtype {item.dtype}; expected floats.")
    c.require(
        not (len(shape) == 3 and shape[-1] == 3 and shape[0] != 3),
        f"{name} has shape {shape}: channels last (HWC); expected channels first [3, S, S] "
        "(use ToTensor, or .permute(2, 0, 1)).",
    )
    c.require(
        len(shape) == 3 and shape[0] == 3,
        f"{name} has shape {shape}; expected [3, S, S] (RGB, channels first, no batch axis).",
    )
    c.require(
        shape[1] == shape[2] >= 4 and shape[1] & (shape[1] - 1) == 0,
        f"{name} has shape {shape}; expected square images whose side is a power of two "
        "(16, 32, 64...), which the networks halve or double at every layer.",
    )
    low, high = float(item.min()), float(item.max())
    c.require(
        -1 - RANGE_TOLERANCE <= low <= high <= 1 + RANGE_TOLERANCE,  # NaN fails this too
        f"{name} has values out of range [{low:.3f}, {high:.3f}]; expected within [-1, 1].",
    )
    c.require(high - low > 1e-3, f"{name} is a constant image (every value {low:.3f}).")
    return item


@_deterministic
def test_scale(scale: Callable[..., Any]) -> None:
    """scale(x, feature_range) maps x in [0, 1] linearly onto feature_range, (-1, 1) by default."""
    ranges = ((-1.0, 1.0), (-0.5, 0.5), (0.0, 2.0))
    x = torch.rand(2, 3, 4, 4)
    x[0, 0, 0, :2] = torch.tensor([0.0, 1.0])  # both ends of [0, 1] appear
    calls = [("scale(x)", (), (-1.0, 1.0))] + [(f"scale(x, {r})", (r,), r) for r in ranges]
    for call, feature_range, (low, high) in calls:
        c = _Check("test_scale", x="[2, 3, 4, 4] in [0, 1]", feature_range=(low, high))
        got = c.run(call, scale, x.clone(), *feature_range)
        c.require(
            isinstance(got, torch.Tensor) and got.shape == x.shape,
            f"{call} returned {_kind(got)}; expected a tensor shaped like x, {tuple(x.shape)}.",
        )
        got = got.detach().float()
        if torch.allclose(got, x * (high - low) + low, atol=1e-5):
            continue
        if torch.allclose(got, x, atol=1e-6):
            diagnosis = "returned x unchanged"
        elif torch.allclose(got, high - x * (high - low), atol=1e-5):
            diagnosis = "is reversed"
        elif (low, high) != (-1.0, 1.0) and torch.allclose(got, x * 2 - 1, atol=1e-5):
            diagnosis = "ignores feature_range"
        else:
            diagnosis = "is wrong"
        raise c.error(
            f"{call} {diagnosis}: it maps 0 -> {float(got[0, 0, 0, 0]):.4g} and 1 -> "
            f"{float(got[0, 0, 0, 1]):.4g}; expected 0 -> {low:g} and 1 -> {high:g}, linearly "
            "in between (x * (high - low) + low)."
        )
    c.passed(x="[2, 3, 4, 4] in [0, 1]", feature_ranges=ranges)


# --- models -----------------------------------------------------------------------------------


@_deterministic
def test_discriminator(Discriminator: Callable[..., nn.Module], *, image_size: int = 32) -> None:  # noqa: N803
    """Discriminator(conv_dim) maps images (N, 3, S, S) to one raw logit per image, N=1 included.

    A score may be (N, 1) or (N, 1, 1, 1); a Discriminator() without conv_dim is built as is.
    """
    c, name = _Check("test_discriminator"), getattr(Discriminator, "__name__", "Discriminator")
    conv_dims = (64, 10) if _n_sizes(Discriminator) else ()
    widths = []
    for sizes in [(conv_dim,) for conv_dim in conv_dims] or [()]:
        run = c.using(**dict(zip(["conv_dim"], sizes, strict=False)), image_size=image_size)
        model, call = _build(run, Discriminator, sizes, image_size)
        widths.append(_n_parameters(model))
        for n in (1, 16):
            images = torch.rand(n, 3, image_size, image_size) * 2 - 1
            scores = _discriminate(run.using(batch_size=n), model, call, images)
    c.using(conv_dims=conv_dims, image_size=image_size).require(
        len(widths) == 1 or widths[0] != widths[1],
        f"conv_dim is ignored: {name}(64) and {name}(10) both have {widths[0]} parameters; "
        "expected the layer widths to scale with conv_dim.",
    )
    run = run.using(batch_size=16)  # the last model, on the last batch
    run.require(
        (scores != scores[0]).any(),
        f"{call} gives the same output {float(scores[0]):.4g} for 16 different images; expected "
        "it to depend on the image.",
    )
    for target, way in ((-1.0, "down"), (2.0, "up")):
        reached = _push_output(model, images[:4], target)
        run.require(
            (reached > target) == (target > 0),
            f"the outputs look bounded (a final sigmoid?): training {call} with Adam to push its "
            f"mean output {way} left it at {reached:.4f}, short of {target:g}. Return raw "
            "logits: the loss (BCEWithLogitsLoss) applies the sigmoid.",
        )
    # A constructor that takes image_size must honour it at another size as well.
    other = 64 if image_size != 64 else 32
    if tried := _accepts(Discriminator, "image_size"):
        run = run.using(image_size=other, batch_size=2)
        model, call = _build(run, Discriminator, sizes, other)
        _discriminate(run, model, call, torch.rand(2, 3, other, other))
    c.passed(
        conv_dims=conv_dims or "not a parameter",
        image_size=image_size,
        batch_sizes=(1, 16),
        outputs="raw logits " + ("(N, 1)" if scores.dim() == 2 else "(N, 1, 1, 1)"),
        **{f"image_size {other}": "checked" if tried else "skipped (no image_size argument)"},
    )


def _discriminate(c: _Check, model: nn.Module, call: str, images: torch.Tensor) -> torch.Tensor:
    """D's scores for images: one logit per image, (N, 1) or (N, 1, 1, 1)."""
    what = f"{call} on a batch of {len(images)} images {tuple(images.shape)} in train mode"
    shapes = [(len(images), *dims) for dims in SCORE_SHAPES]
    return c.forward(model, what, images, shapes, meaning=": one logit per image")


def z_shape_for(generator: nn.Module, z_size: int) -> str:
    """Which z the generator takes: "flat", shape (N, z_size), or "4d", (N, z_size, 1, 1).

    The first course version's generator starts with a Linear layer and takes flat z; the later
    one starts with a transposed convolution and takes 4d z. Tried in eval mode, without
    gradients, on zeros, so BatchNorm statistics and the random state stay as they were.
    "flat" when both work; ValueError naming both errors when neither does.
    """
    parameter = next(generator.parameters(), None)
    like = {} if parameter is None else {"device": parameter.device, "dtype": parameter.dtype}
    training = generator.training
    generator.eval()
    try:
        with torch.no_grad():
            shape, errors = _first_that_runs(
                lambda shape: generator(torch.zeros(2, z_size, *Z_SHAPES[shape], **like)), Z_SHAPES
            )
    finally:
        generator.train(training)
    if shape is None:
        raise ValueError(
            f"the generator takes neither z of shape (2, {z_size}) ({errors[0]}) nor "
            f"(2, {z_size}, 1, 1) ({errors[1]})"
        )
    return shape


@_deterministic
def test_generator(
    Generator: Callable[..., nn.Module],  # noqa: N803
    *,
    z_size: int = 100,
    image_size: int = 32,
) -> None:
    """Generator(z_size, conv_dim) maps z to images (N, 3, S, S) in [-1, 1] that depend on z.

    z may be flat, (N, z_size), or (N, z_size, 1, 1): the check finds which (z_shape_for). A
    Generator(z_size) without conv_dim is built with z_size alone.
    """
    c, name = _Check("test_generator"), getattr(Generator, "__name__", "Generator")
    n_sizes = _n_sizes(Generator)
    configs = tuple(dict.fromkeys(sizes[:n_sizes] for sizes in ((z_size, 64), (25, 10))))
    for sizes in configs:
        run = c.using(
            **dict(zip(["z_size", "conv_dim"], sizes, strict=False)), image_size=image_size
        )
        model, call = _build(run, Generator, sizes, image_size)
        z_dim = sizes[0] if sizes else z_size
        shape = _z_shape(run, model, call, z_dim)
        for n in (1, 16):
            z = torch.randn(n, z_dim, *Z_SHAPES[shape])
            images = _generate(run.using(batch_size=n), model, call, z, image_size=image_size)
    if n_sizes >= 2:
        wide, _ = _build(c, Generator, (25, 64), image_size)
        c.using(z_size=25, conv_dims=(64, 10), image_size=image_size).require(
            _n_parameters(wide) != _n_parameters(model),
            f"conv_dim is ignored: {name}(25, 64) and {name}(25, 10) both have "
            f"{_n_parameters(model)} parameters; expected the layer widths to scale with conv_dim.",
        )
    run = run.using(batch_size=16)  # the last model, on the last batch
    run.require(
        (images != images[0]).any(),
        "the output ignores z: 16 different z gave the same image; expected different images.",
    )
    model.eval()
    with torch.no_grad():
        same = run.run(f"{call} in eval mode", lambda: torch.equal(model(z), model(z)))
    run.require(
        same,
        f"{call} in eval mode gave different images for the same z: the output must be a "
        "function of z alone (no noise drawn inside forward).",
    )
    model.train()
    for target, way, extreme_of in ((0.95, "up", torch.max), (-0.95, "down", torch.min)):
        extreme = _push_output(model, z[:4], target, extreme_of)
        run.require(
            abs(extreme) <= 1 + RANGE_TOLERANCE,
            f"training {call} with Adam to push its output {way} gave {extreme:.3f}, outside "
            "[-1, 1]: the last layer needs a tanh.",
        )
        run.require(
            abs(extreme) > 0.9,
            f"the output range is not [-1, 1]: training {call} with Adam to push its output "
            f"{way} only reached {extreme:.3f}. Use tanh as the last layer (a sigmoid gives "
            "[0, 1]).",
        )
    c.passed(
        **{"(z_size, conv_dim)": configs},
        image_size=image_size,
        batch_sizes=(1, 16),
        z="flat (N, z_size)" if shape == "flat" else "4d (N, z_size, 1, 1)",
        range="[-1, 1], fully used",
    )


def _z_shape(c: _Check, model: nn.Module, call: str, z_size: int) -> str:
    """z_shape_for(model, z_size), a failure when the generator takes neither shape."""
    try:
        return z_shape_for(model, z_size)
    except NotImplementedError:
        c.not_written()
    except ValueError as error:
        raise c.error(
            f"{call}: {error}. It must take z (N, z_size) or (N, z_size, 1, 1)."
        ) from error


def _generate(c: _Check, model: nn.Module, call: str, z: torch.Tensor, *, image_size: int) -> Any:
    """G's images for z: (N, 3, S, S) within [-1, 1]."""
    n, what = len(z), f"{call} on z of shape {tuple(z.shape)}"
    images = c.forward(model, what, z, [(n, 3, image_size, image_size)])
    low, high = float(images.min()), float(images.max())
    c.require(
        -1 - RANGE_TOLERANCE <= low <= high <= 1 + RANGE_TOLERANCE,
        f"{what} gave values in [{low:.3f}, {high:.3f}], outside [-1, 1]: the last layer needs "
        "a tanh so the images match the training data's range.",
    )
    return images


@_deterministic
def test_weights_init(weights_init_normal: Callable[[nn.Module], None]) -> None:
    """model.apply(weights_init_normal) draws conv and linear weights from N(0, 0.02)."""
    # Small fan-ins, so that PyTorch's default init (uniform, std ~ 1/sqrt(3 * fan_in)) is far
    # from std 0.02 for every layer kind; a few thousand weights each make the sample
    # statistics exact enough for tight bounds.
    model = nn.Sequential(
        nn.Conv2d(3, 32, 4, 2, 1),  # 1536 weights, default std 0.083
        nn.BatchNorm2d(32),
        nn.LeakyReLU(0.2),
        nn.ConvTranspose2d(32, 8, 4, 2, 1),  # 4096 weights, default std 0.051
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64, 64),  # 4096 weights, default std 0.072
    )
    c = _Check("test_weights_init", model=", ".join(type(layer).__name__ for layer in model))
    c.run("model.apply(weights_init_normal)", model.apply, weights_init_normal)
    for index, layer in enumerate(model):
        if not hasattr(layer, "weight"):
            continue
        name, weight = f"{type(layer).__name__} (layer {index})", layer.weight.detach()
        mean, std = float(weight.mean()), float(weight.std())
        stats = c.using(layer=name, weights=weight.numel(), mean=f"{mean:.4f}", std=f"{std:.4f}")
        if isinstance(layer, nn.BatchNorm2d):
            stats.require(
                abs(mean - 1) < 0.1,
                f"the BatchNorm scale (weight) of {name} has mean {mean:.4f}; expected about 1: a "
                "scale near 0 switches the layer off. Only conv and linear weights get N(0, 0.02).",
            )
            continue
        default = "They look like PyTorch's default init: is this layer type initialised?"
        stats.require(
            0.015 <= std <= 0.025,
            f"the weights of {name} have std {std:.4f}; expected 0.02 (0.015..0.025). "
            + (default if 0.03 < std < 0.1 else "Use nn.init.normal_(m.weight, 0.0, 0.02)."),
        )
        stats.require(
            abs(mean) < 0.005,
            f"the weights of {name} have mean {mean:.4f}; expected 0 (normal_(w, mean=0.0, "
            "std=0.02): are mean and std swapped?).",
        )
        # About 68% of a normal sample lies within one std of the mean; 58% of a uniform one.
        within = float(((weight - mean).abs() < std).float().mean())
        stats.require(
            0.63 < within < 0.74,
            f"the weights of {name} do not look normal: {within:.1%} lie within one std of the "
            "mean, expected about 68% (uniform gives 58%). Draw them from a normal distribution.",
        )
    c.passed(layers="Conv2d, ConvTranspose2d, Linear, BatchNorm2d", expected="mean 0, std 0.02")


# --- losses and optimizers --------------------------------------------------------------------


@_deterministic
def test_losses(real_loss: Callable[..., Any], fake_loss: Callable[..., Any]) -> None:
    """real_loss and fake_loss are the batch mean of BCE on logits with labels 1 and 0.

    d_out is (N, 1), or (N, 1, 1, 1) if the losses run on that alone.
    """
    c = _Check("test_losses")

    def on_zeros(dims: tuple) -> Any:
        return real_loss(torch.zeros(4, *dims))

    dims = c.run("real_loss(d_out)", _first_that_runs, on_zeros, SCORE_SHAPES)[0] or SCORE_SHAPES[0]
    logits = torch.randn(16, *dims) * 3
    cases = {
        "large positive logits (D sure it is real)": torch.full_like(logits, 10.0),
        "large negative logits (D sure it is fake)": torch.full_like(logits, -10.0),
        "logits all 0 (D unsure)": torch.zeros_like(logits),
        "random logits": logits,
        f"a batch of one, shape {(1, *dims)}": logits[:1],
    }
    for case, d_out in cases.items():
        _check_loss(c.using(case=case), "real_loss(d_out)", real_loss, d_out, label=1.0)
        _check_loss(c.using(case=case), "fake_loss(d_out)", fake_loss, d_out, label=0.0)
    smooth = _accepts(real_loss, "smooth")
    for case in ("large positive logits (D sure it is real)", "random logits") if smooth else ():
        for on, label in ((True, 0.9), (False, 1.0)):
            loss = functools.partial(real_loss, smooth=on)
            _check_loss(
                c.using(case=case), f"real_loss(d_out, smooth={on})", loss, cases[case], label=label
            )
    c.passed(
        **{"logits shape": f"{(16, *dims)} and {(1, *dims)}"},
        cases="+10, -10, 0, random",
        **{"smooth=True": "checked (label 0.9)" if smooth else "skipped (no smooth argument)"},
    )


def _check_loss(
    c: _Check, call: str, loss: Callable, logits: torch.Tensor, *, label: float
) -> None:
    """loss(logits) is the mean BCE-with-logits against label, and it backpropagates."""
    case, c = c.params["case"], c.using(**{"d_out shape": tuple(logits.shape)}, label=label)
    d_out = logits.clone().requires_grad_(True)
    hint = (
        "d_out holds raw logits, one per image, N=1 included: use BCEWithLogitsLoss (BCELoss "
        "needs probabilities) with labels shaped like d_out, e.g. torch.ones_like(d_out)."
    )
    value = c.run(f"{call} on {case}", loss, d_out, hint=hint)
    c.require(
        isinstance(value, torch.Tensor) and value.numel() == 1,
        f"{call} returned {_kind(value)}; expected a tensor holding one number (the mean over "
        "the batch), connected to d_out for backward().",
    )
    got, expected = float(value.detach()), _bce(logits, label)
    c.require(
        math.isfinite(got),
        f"{call} on {case} returned {got}; expected {expected:.4f}. It seems to expect "
        "probabilities, but the discriminator outputs logits: use BCEWithLogitsLoss.",
    )
    if not math.isclose(got, expected, rel_tol=1e-3, abs_tol=1e-4):
        ln2 = " (ln 2: with logits 0 both losses are ln 2)" if (logits == 0).all() else ""
        mistake = _loss_mistake(got, expected, label, logits)
        raise c.error(f"{call} on {case} is {got:.4f}; expected {expected:.4f}{ln2}{mistake}")
    c.require(
        value.requires_grad,
        f"{call} returned a value with no gradient: the loss must stay a tensor connected to "
        "d_out (no .item(), .detach() or torch.tensor(...) around it).",
    )
    value.backward()
    c.require(
        d_out.grad is not None and d_out.grad.abs().sum() > 0,
        f"{call} gives no gradient to d_out: the loss must be computed from d_out.",
    )


def _loss_mistake(got: float, expected: float, label: float, logits: torch.Tensor) -> str:
    """The likely mistake behind a wrong loss value, as the end of a sentence."""
    if got < 0:
        return (
            ". A cross-entropy is never negative: the loss seems to treat d_out as "
            "probabilities, but the discriminator outputs logits (use BCEWithLogitsLoss)."
        )
    guesses = {}  # the loss each mistake would give, where it can happen
    if label in (0.0, 1.0):
        wanted = "real images (label 1)" if label else "fakes (label 0)"
        guesses[f"The labels look swapped: this loss is for {wanted}."] = _bce(logits, 1 - label)
    guesses["This is the sum over the batch: use the mean."] = expected * len(logits)
    if label == 0.9:
        guesses["smooth=True is ignored: it should use the real label 0.9."] = _bce(logits, 1.0)
    if label == 1.0:
        guesses["Label 0.9 is used without smooth=True: the default label is 1."] = _bce(
            logits, 0.9
        )
    twice = torch.sigmoid(torch.sigmoid(logits))
    guesses["The sigmoid is applied twice: BCEWithLogitsLoss applies it already."] = float(
        F.binary_cross_entropy(twice, torch.full_like(twice, label))
    )
    for mistake, value in guesses.items():
        if math.isclose(got, value, rel_tol=1e-3, abs_tol=1e-4):
            return f". {mistake}"
    return f": the mean binary cross-entropy of sigmoid(d_out) against label {label:g}."


def test_optimizers(
    d_optimizer: Any,
    g_optimizer: Any,
    discriminator: nn.Module | None = None,
    generator: nn.Module | None = None,
) -> None:
    """One optimizer per network, over that network's parameters, with DCGAN-like settings."""
    c = _Check("test_optimizers")
    optimizers = {"d_optimizer": d_optimizer, "g_optimizer": g_optimizer}
    if d_optimizer is None or g_optimizer is None:
        c.not_written()
    held = {}  # the parameters each optimizer holds, by id
    for name, optimizer in optimizers.items():
        c.require(
            isinstance(optimizer, torch.optim.Optimizer),
            f"{name} is a {type(optimizer).__name__}; expected a torch.optim.Optimizer like Adam.",
        )
        held[name] = {id(p) for group in optimizer.param_groups for p in group["params"]}
        c.require(held[name], f"{name} has no parameters; expected the network's parameters.")
        for key in ("lr", "betas"):
            values = [group.get(key) for group in optimizer.param_groups]
            if None not in values:
                c = c.using(**{f"{name[0]} {key}": values[0] if len(values) == 1 else values})
    c.require(
        d_optimizer is not g_optimizer,
        "d_optimizer and g_optimizer are the same object; expected one optimizer per network.",
    )
    shared = len(held["d_optimizer"] & held["g_optimizer"])
    c.require(
        not shared,
        f"d_optimizer and g_optimizer share {shared} parameter tensors; expected each to hold "
        "only its own network's.",
    )
    networks = {"discriminator": discriminator, "generator": generator}
    owned = {
        owner: {id(p) for p in network.parameters() if p.requires_grad}
        for owner, network in networks.items()
        if network is not None
    }
    given = ", ".join(owner[0].upper() for owner in owned) or "no models given"
    c = c.using(**{"parameters matched to models": given})
    owners = {"d_optimizer": "discriminator", "g_optimizer": "generator"}
    for name, owner in owners.items():
        other = "generator" if owner == "discriminator" else "discriminator"
        c.require(
            held[name] != owned.get(other),
            f"the optimizers are swapped: {name} holds the {other}'s parameters; expected "
            "d_optimizer over discriminator.parameters(), g_optimizer over generator.parameters().",
        )
    for name, owner in owners.items():
        want = owned.get(owner, held[name])
        c.require(
            want <= held[name],
            f"{name} is missing {len(want - held[name])} of the {owner}'s {len(want)} parameter "
            f"tensors; expected all of {owner}.parameters().",
        )
        c.require(
            held[name] <= want,
            f"{name} holds {len(held[name] - want)} parameter tensors that are not the {owner}'s; "
            f"expected only {owner}.parameters().",
        )
    for name, optimizer in optimizers.items():
        for group in optimizer.param_groups:
            lr, betas = group.get("lr"), group.get("betas", (0.5, 0.999))
            c.require(
                isinstance(lr, float | int) and 1e-5 <= lr <= 1e-3,
                f"{name} has lr {lr}; expected 1e-5..1e-3 (DCGAN uses 2e-4): GANs diverge with a "
                "large lr and barely move with a tiny one.",
            )
            # Adam's default beta1 = 0.9 is the classic pitfall: the momentum lags behind the
            # opponent's moves and training oscillates. The DCGAN paper found 0.5 stable.
            c.require(
                betas[0] < 0.9,
                f"{name} has beta1 {betas[0]} (betas {tuple(betas)}); expected 0.5 as in DCGAN: "
                "Adam's default 0.9 makes GAN training oscillate. Pass betas=(0.5, 0.999).",
            )
            if betas[0] != 0.5:
                message = f"test_optimizers: {name} has beta1 {betas[0]}; DCGAN uses 0.5."
                warnings.warn(message, UserWarning, stacklevel=2)
    c.passed(**c.params)


# --- training step ----------------------------------------------------------------------------


class _TinyDiscriminator(nn.Module):
    """A small DCGAN-style discriminator for 16x16 images, one logit per image.

    Its brightness term scores the bright real batch (mean 0.7) about +1.4 and the untrained
    generator's grey fakes (mean 0) about -1.4. So d_real and d_fake differ clearly, and the
    gradients of the right and of swapped labels point in opposite directions: a step with
    swapped labels raises the right loss.
    """

    MIDPOINT = 0.35  # halfway between the real and the fake images' mean brightness

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(8, 16, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(16 * 4 * 4, 1),
        )
        self.brightness = nn.Parameter(torch.tensor(4.0))
        self.score_dims = SCORE_SHAPES[0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        brightness = images.mean(dim=(1, 2, 3)).unsqueeze(1) - self.MIDPOINT
        scores = self.features(images) + self.brightness * brightness
        return scores.view(len(images), *self.score_dims)


@_deterministic
def test_training_step(train_step: Callable[..., Any]) -> None:
    """train_step(D, G, d_optimizer, g_optimizer, real_images, z) does one D and one G update."""
    c = _Check("test_training_step", image_size=16, batch_size=8, z_size=16)
    c = c.using(optimizers=f"Adam(lr={STEP_LR}, betas=(0.5, 0.999))")
    d_start = _TinyDiscriminator()
    g_start = nn.Sequential(  # z (N, 16) to images (N, 3, 16, 16)
        nn.Unflatten(1, (16, 1, 1)),
        nn.ConvTranspose2d(16, 16, 4, 1, 0),
        nn.ReLU(),
        nn.ConvTranspose2d(16, 8, 4, 2, 1),
        nn.ReLU(),
        nn.ConvTranspose2d(8, 3, 4, 2, 1),
        nn.Tanh(),
    )
    # Bright real images (mean 0.7): the discriminator scores them above the grey fakes.
    real_images = (torch.rand(8, 3, 16, 16) * 0.6 + 0.4).clamp(-1, 1)
    z = torch.randn(8, 16)

    def step(score_dims: tuple, stale: str = "") -> tuple[Any, dict[str, nn.Module]]:
        """One train_step on fresh copies of the networks and optimizers, D scoring score_dims.

        stale names a network whose .grad is first filled with junk, as a previous step leaves it.
        """
        nets = {"discriminator": copy.deepcopy(d_start), "generator": copy.deepcopy(g_start)}
        nets["discriminator"].score_dims = score_dims
        for p in nets[stale].parameters() if stale else ():
            p.grad = torch.full_like(p, 10.0)
        adams = [torch.optim.Adam(net.parameters(), STEP_LR, (0.5, 0.999)) for net in nets.values()]
        with _seeded(SEED + 1):  # the same seed every time, so that runs differ by stale alone
            arguments = (*nets.values(), *adams, real_images.clone(), z.clone())
            return c.run(STEP_CALL, train_step, *arguments), nets

    # D scores (N, 1), or (N, 1, 1, 1) if the step runs on that alone.
    score_dims = _first_that_runs(step, SCORE_SHAPES)[0] or SCORE_SHAPES[0]
    stats, after = step(score_dims)
    d_after, g_after = after["discriminator"], after["generator"]
    with torch.no_grad():
        fakes = g_start(z)
        real_logits, fake_logits = d_start(real_images), d_start(fakes)
    _check_stats(c, stats, real_logits, fake_logits)
    # A missing optimizer.step() leaves a network unchanged.
    c.require(
        _max_difference(d_start, d_after) > 0,
        "the discriminator's parameters did not change: call d_optimizer.step() after "
        "d_loss.backward() (and zero_grad() before backward, not between backward and step).",
    )
    c.require(
        _max_difference(g_start, g_after) > 0,
        "the generator's parameters did not change: call g_optimizer.step() after "
        "g_loss.backward() (zero_grad() before backward, and g_loss on fakes not detached).",
    )
    # With a small learning rate one optimizer step lowers its own loss, so a loss that went up
    # means the step trained towards the wrong labels.
    with torch.no_grad():
        before = _bce(real_logits, 1.0) + _bce(fake_logits, 0.0)
        now = _bce(d_after(real_images), 1.0) + _bce(d_after(fakes), 0.0)
        c.require(
            now < before,
            f"the discriminator step made D worse: its loss on the same batch went from "
            f"{before:.6f} to {now:.6f}. Are the labels swapped? D should learn real images "
            "-> 1 (real_loss) and G(z) -> 0 (fake_loss).",
        )
        # Judged by the updated discriminator, which the generator step trained against.
        before, now = _bce(d_after(fakes), 1.0), _bce(d_after(g_after(z)), 1.0)
        c.require(
            now < before,
            f"the generator step made D less fooled: G's loss real_loss(D(G(z))) against the "
            f"updated D went from {before:.6f} to {now:.6f}. Are the labels swapped? G should "
            "learn to make D say real: g_loss = real_loss(D(G(z))).",
        )
    # Gradients must be cleared before each backward, or the old ones add to the new.
    for net in ("discriminator", "generator"):
        c.require(
            _max_difference(after[net], step(score_dims, stale=net)[1][net]) < STEP_LR / 100,
            f"old gradients change the {net}'s update: they accumulate. Call "
            f"{net[0]}_optimizer.zero_grad() before {net[0]}_loss.backward().",
        )
    c.passed(
        **c.params,
        **{"D scores": "(N, 1)" if score_dims == (1,) else "(N, 1, 1, 1)"},
        checked="stats, both networks updated, update directions, zero_grad",
    )


def _check_stats(
    c: _Check, stats: Any, real_logits: torch.Tensor, fake_logits: torch.Tensor
) -> None:
    """Finite losses; d_real and d_fake are the mean probabilities D gave before its update."""
    c.require(
        isinstance(stats, dict),
        f"train_step returned a {type(stats).__name__}; expected a dict with keys {STEP_KEYS}.",
    )
    missing = [key for key in STEP_KEYS if key not in stats]
    c.require(not missing, f"the returned dict is missing keys {missing}.")
    values = {key: c.run(f"float(stats[{key!r}])", _number, stats[key]) for key in STEP_KEYS}
    for key, value in values.items():
        c.require(math.isfinite(value), f"stats[{key!r}] is {value}, not finite.")
    expected = {
        "d_real": float(torch.sigmoid(real_logits).mean()),
        "d_fake": float(torch.sigmoid(fake_logits).mean()),
    }
    for key, other, images in (("d_real", "d_fake", "real_images"), ("d_fake", "d_real", "G(z)")):
        value, want = values[key], f"sigmoid(D({images})).mean() = {expected[key]:.4f}"
        c.require(
            0 <= value <= 1,
            f"stats[{key!r}] is {value:.4f}, outside [0, 1]; expected the mean probability "
            f"{want}. Raw logits need a sigmoid.",
        )
        swapped = " d_real and d_fake look swapped." if abs(value - expected[other]) < 0.01 else ""
        c.require(
            abs(value - expected[key]) < 0.01,
            f"stats[{key!r}] is {value:.4f}; expected {want}, D's mean probability of 'real'."
            + swapped,
        )


def _number(value: Any) -> float:
    """A float from a float or a one-element tensor (detached, on any device)."""
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def _max_difference(a: nn.Module, b: nn.Module) -> float:
    """The largest change between two copies of the same model's parameters."""
    with torch.no_grad():
        pairs = zip(a.parameters(), b.parameters(), strict=True)
        return max((float((p - q).abs().max()) for p, q in pairs), default=0.0)
