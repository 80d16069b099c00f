"""Checks for each stage of the notebook: run them on your own implementations.

Every check prints one line, "test_x: passed (...)", or raises an AssertionError that says
what is wrong, what was expected and which sizes it used. The checks build their own small
inputs with fixed seeds on one CPU thread, so they give the same answer every run, and they
restore torch's random state and thread count afterwards so your notebook's results do not
change. They use torch and numpy only: your code is judged on its own, not against the
reference package.

    test_dataset(dataset)                     items are [3, S, S] float tensors in [-1, 1]
    test_scale(scale)                         [0, 1] mapped linearly onto feature_range
    test_discriminator(Discriminator)         (N, 1) raw logits, batches of one included
    test_generator(Generator)                 (N, 3, 32, 32) in [-1, 1] that depend on z
    test_weights_init(weights_init_normal)    conv and linear weights from N(0, 0.02)
    test_losses(real_loss, fake_loss)         binary cross-entropy on logits, batch mean
    test_optimizers(d_optimizer, g_optimizer) one optimizer per network, DCGAN settings
    test_training_step(train_step)            one D step then one G step, in the right way
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# The checks in the order the notebook calls them.
CHECKS = (
    "test_dataset",
    "test_scale",
    "test_discriminator",
    "test_generator",
    "test_weights_init",
    "test_losses",
    "test_optimizers",
    "test_training_step",
)
SEED = 0
LN2 = math.log(2)
# Values a float32 tanh or a [-1, 1] image may reach: a hair of rounding, no more.
RANGE_TOLERANCE = 1e-5

Params = Mapping[str, object]


# --- shared helpers -------------------------------------------------------------------------


def _describe(params: Params) -> str:
    return ", ".join(f"{name}={value}" for name, value in params.items()) or "none"


def _error(check: str, problem: str, params: Params) -> AssertionError:
    """The error every check raises: the problem, then the parameters the check used."""
    return AssertionError(f"{check}: {problem}\n  parameters: {_describe(params)}")


def _require(ok: bool, check: str, problem: str, params: Params) -> None:
    if not ok:
        raise _error(check, problem, params)


def _passed(check: str, params: Params) -> None:
    print(f"{check}: passed ({_describe(params)})")


def _call(
    check: str, what: str, params: Params, function: Callable[..., Any], *args: Any, hint: str = ""
) -> Any:
    """function(*args); an exception becomes an AssertionError naming the call that failed."""
    try:
        return function(*args)
    except Exception as error:
        problem = f"{what} raised {type(error).__name__}: {error}"
        raise _error(check, f"{problem}. {hint}" if hint else problem, params) from error


@contextlib.contextmanager
def _seeded(seed: int = SEED) -> Iterator[None]:
    """Fix torch's CPU random state inside the block; the caller's state comes back after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _deterministic(check: Callable[..., None]) -> Callable[..., None]:
    """Run a check under a fixed seed on one CPU thread; both are restored afterwards.

    The checks' networks are tiny: extra threads only add overhead (a lot of it on a busy
    machine), and one thread makes every floating-point sum repeatable.
    """

    @functools.wraps(check)
    def run(*args: Any, **kwargs: Any) -> None:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with _seeded():
                check(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return run


def _accepts(function: Callable[..., Any], name: str) -> bool:
    """Whether function (or a class's constructor) takes a parameter called name."""
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):  # builtins and some C extensions have no signature
        return False


def _build(
    check: str, cls: Callable[..., Any], args: tuple[int, ...], params: Params, **kwargs: int
) -> nn.Module:
    """cls(*args, **kwargs) as a module in train mode, as it is during training."""
    arguments = [str(arg) for arg in args] + [f"{key}={value}" for key, value in kwargs.items()]
    call = f"{getattr(cls, '__name__', 'model')}({', '.join(arguments)})"
    model = _call(check, call, params, lambda: cls(*args, **kwargs))
    _require(
        isinstance(model, nn.Module),
        check,
        f"{call} gave a {type(model).__name__}; expected a torch.nn.Module.",
        params,
    )
    return model.train()


def _n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _push_output(
    model: nn.Module,
    inputs: torch.Tensor,
    direction: float,
    done: Callable[[torch.Tensor], bool],
    steps: int = 60,
    lr: float = 0.05,
) -> torch.Tensor:
    """Train a copy of model with Adam to move its mean output up (+1) or down (-1).

    This tells a bounded output (sigmoid, tanh) from an unbounded one whatever the
    initial weights: a bounded output can never cross its bound. Stops once done(output).
    """
    model = copy.deepcopy(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        output = model(inputs)
        if done(output.detach()):
            break
        optimizer.zero_grad()
        (-direction * output.mean()).backward()
        optimizer.step()
    return output.detach()


def _max_difference(a: nn.Module, b: nn.Module) -> float:
    """The largest change between two copies of the same model's parameters."""
    with torch.no_grad():
        pairs = zip(a.parameters(), b.parameters(), strict=True)
        return max((float((p - q).abs().max()) for p, q in pairs), default=0.0)


# --- data -----------------------------------------------------------------------------------


def test_dataset(dataset: Any, n_items: int = 8) -> None:
    """Items are bare float tensors [3, S, S] (S a power of two) with values scaled to [-1, 1]."""
    check = "test_dataset"
    params: dict[str, object] = {}
    _require(
        hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"),
        check,
        f"a {type(dataset).__name__} has no len() or indexing; expected a torch Dataset.",
        params,
    )
    size = len(dataset)
    params["len"] = size
    _require(size > 0, check, "the dataset is empty: check the data path or n_images.", params)
    # Items spread over the whole dataset, the same ones every run.
    indices = sorted({int(i) for i in np.linspace(0, size - 1, min(n_items, size))})
    params["indices checked"] = indices
    items = [_checked_item(dataset, index, params) for index in indices]

    shapes = {tuple(item.shape) for item in items}
    _require(len(shapes) == 1, check, f"items have different shapes {sorted(shapes)}.", params)
    params["image_size"] = items[0].shape[-1]
    low = min(float(item.min()) for item in items)
    high = max(float(item.max()) for item in items)
    params["value range"] = f"[{low:.3f}, {high:.3f}]"
    # Any real photo has dark pixels: if none of several images goes below -0.5, the
    # values were left in [0, 1] (the generator's tanh outputs [-1, 1], so they must match).
    _require(
        low < -0.5,
        check,
        f"the images are not scaled to [-1, 1]: the smallest value over {len(items)} items is "
        f"{low:.3f}, expected clearly below 0 (< -0.5). Values in [0, 1] mean scale() "
        "(x * 2 - 1) was not applied.",
        params,
    )
    _require(
        high > 0,
        check,
        f"the images use only the lower half of [-1, 1]: the largest value is {high:.3f}, "
        "expected above 0. Check how the values are scaled.",
        params,
    )
    if len(items) > 1:
        _require(
            not all(torch.equal(items[0], item) for item in items[1:]),
            check,
            f"dataset[i] is the same image for every index checked {indices}: "
            "__getitem__ ignores its index.",
            params,
        )
    _passed(check, params)


def _checked_item(dataset: Any, index: int, params: Params) -> torch.Tensor:
    """dataset[index], checked to be a float [3, S, S] tensor in [-1, 1] that is not constant."""
    check, name = "test_dataset", f"dataset[{index}]"
    item = _call(check, name, params, dataset.__getitem__, index)
    if isinstance(item, tuple | list):
        raise _error(
            check,
            f"{name} is a {type(item).__name__} of {len(item)} items (an (image, label) pair?); "
            "expected the image tensor alone, shape [3, S, S].",
            params,
        )
    _require(
        isinstance(item, torch.Tensor),
        check,
        f"{name} has type {type(item).__name__}; expected a torch tensor of shape [3, S, S].",
        params,
    )
    item = item.detach()
    _require(
        item.is_floating_point(),
        check,
        f"{name} has dtype {item.dtype}; expected a float tensor with values in [-1, 1].",
        params,
    )
    shape = tuple(item.shape)
    channels_last = len(shape) == 3 and shape[-1] == 3 and shape[0] != 3
    _require(
        not channels_last,
        check,
        f"{name} has shape {shape}: channels last (HWC); expected channels first [3, S, S], "
        "as torch convolutions need (use ToTensor, or .permute(2, 0, 1)).",
        params,
    )
    _require(
        len(shape) == 3 and shape[0] == 3,
        check,
        f"{name} has shape {shape}; expected [3, S, S] (RGB, channels first, no batch axis).",
        params,
    )
    side = shape[1]
    _require(
        shape[2] == side and side >= 4 and side & (side - 1) == 0,
        check,
        f"{name} has shape {shape}; expected square images whose side S is a power of two "
        "(16, 32, 64...), which the networks halve or double at every layer.",
        params,
    )
    _require(bool(torch.isfinite(item).all()), check, f"{name} contains NaN or inf.", params)
    low, high = float(item.min()), float(item.max())
    _require(
        low >= -1 - RANGE_TOLERANCE and high <= 1 + RANGE_TOLERANCE,
        check,
        f"{name} has values out of range [{low:.3f}, {high:.3f}]; expected within [-1, 1].",
        params,
    )
    _require(
        high - low > 1e-3,
        check,
        f"{name} is a constant image (every value {low:.3f}); expected a picture.",
        params,
    )
    return item


@_deterministic
def test_scale(scale: Callable[..., Any]) -> None:
    """scale(x, feature_range) maps x in [0, 1] linearly onto feature_range, (-1, 1) by default."""
    check = "test_scale"
    ranges = ((-1.0, 1.0), (-0.5, 0.5), (0.0, 2.0))
    params = {"x": "[2, 3, 4, 4] in [0, 1]", "feature_ranges": ranges}
    x = torch.rand(2, 3, 4, 4)
    x[0, 0, 0, :2] = torch.tensor([0.0, 1.0])  # both ends of [0, 1] appear
    _check_scaled(_call(check, "scale(x)", params, scale, x.clone()), x, (-1.0, 1.0), "scale(x)")
    for feature_range in ranges:
        call = f"scale(x, {feature_range})"
        got = _call(check, call, params, scale, x.clone(), feature_range)
        _check_scaled(got, x, feature_range, call)
    _passed(check, params)


def _check_scaled(got: Any, x: torch.Tensor, feature_range: tuple[float, float], call: str) -> None:
    check = "test_scale"
    low, high = feature_range
    params = {"x": "[2, 3, 4, 4] in [0, 1]", "feature_range": feature_range}
    _require(
        isinstance(got, torch.Tensor),
        check,
        f"{call} returned a {type(got).__name__}; expected a tensor.",
        params,
    )
    _require(
        got.shape == x.shape,
        check,
        f"{call} returned shape {tuple(got.shape)}; expected the input's {tuple(x.shape)}.",
        params,
    )
    got = got.detach().float()
    if torch.allclose(got, x * (high - low) + low, atol=1e-5):
        return
    at_0, at_1 = float(got[0, 0, 0, 0]), float(got[0, 0, 0, 1])
    if torch.allclose(got, x, atol=1e-6):
        diagnosis = "returned x unchanged"
    elif torch.allclose(got, high - x * (high - low), atol=1e-5):
        diagnosis = "is reversed"
    elif feature_range != (-1.0, 1.0) and torch.allclose(got, x * 2 - 1, atol=1e-5):
        diagnosis = "ignores feature_range"
    else:
        diagnosis = "is wrong"
    raise _error(
        check,
        f"{call} {diagnosis}: it maps 0 -> {at_0:.4g} and 1 -> {at_1:.4g}; expected 0 -> {low:g} "
        f"and 1 -> {high:g}, linearly in between (x * (high - low) + low).",
        params,
    )


# --- models ---------------------------------------------------------------------------------


@_deterministic
def test_discriminator(Discriminator: Callable[..., nn.Module]) -> None:  # noqa: N803
    """Discriminator(conv_dim) maps (N, 3, 32, 32) images to (N, 1) raw logits, N=1 included."""
    check = "test_discriminator"
    name = getattr(Discriminator, "__name__", "Discriminator")
    conv_dims, batch_sizes = (64, 10), (1, 16)
    sizes = {}
    for conv_dim in conv_dims:
        params = {"conv_dim": conv_dim, "image_size": 32}
        model = _build(check, Discriminator, (conv_dim,), params)
        sizes[conv_dim] = _n_parameters(model)
        for n in batch_sizes:
            images = torch.rand(n, 3, 32, 32) * 2 - 1
            output = _discriminate(model, f"{name}({conv_dim})", images, params)
    params = {"conv_dims": conv_dims, "image_size": 32}
    _require(
        sizes[64] != sizes[10],
        check,
        f"conv_dim is ignored: {name}(64) and {name}(10) both have {sizes[10]} parameters; "
        "expected the layer widths to scale with conv_dim.",
        params,
    )
    # `model`, `images` and `output` are from the last loop: conv_dim 10, a batch of 16.
    params = {"conv_dim": 10, "image_size": 32, "batch_size": 16}
    _require(
        bool((output != output[0]).any()),
        check,
        f"{name}(10) gives the same output {float(output[0]):.4g} for 16 different images; "
        "expected the output to depend on the image.",
        params,
    )
    _check_logits(model, name, images, params)
    tried_64 = _accepts(Discriminator, "image_size")
    if tried_64:
        params = {"conv_dim": 10, "image_size": 64, "batch_size": 2}
        model = _build(check, Discriminator, (10,), params, image_size=64)
        _discriminate(model, f"{name}(10, image_size=64)", torch.rand(2, 3, 64, 64), params)
    _passed(
        check,
        {
            "conv_dims": conv_dims,
            "image_size": 32,
            "batch_sizes": batch_sizes,
            "outputs": "raw logits",
            "image_size 64": "checked" if tried_64 else "skipped (no image_size argument)",
        },
    )


def _discriminate(
    model: nn.Module, call: str, images: torch.Tensor, params: Params
) -> torch.Tensor:
    """model(images), checked to be finite logits of shape (N, 1)."""
    check, n = "test_discriminator", len(images)
    params = {**params, "batch_size": n}
    hint = ""
    if n == 1:
        hint = (
            "A batch of 1 must work in train mode (an epoch's last batch can be that small): "
            "avoid BatchNorm1d on the flattened features or output, and views with a fixed batch "
            "size (use x.view(x.size(0), -1))."
        )
    shape = tuple(images.shape)
    output = _call(
        check,
        f"{call} on a batch of {n} images {shape} in train mode",
        params,
        model,
        images,
        hint=hint,
    )
    _require(
        isinstance(output, torch.Tensor) and tuple(output.shape) == (n, 1),
        check,
        f"{call} on images {shape} gave shape {tuple(getattr(output, 'shape', ()))}; expected "
        f"({n}, 1): one logit per image.",
        params,
    )
    _require(bool(torch.isfinite(output).all()), check, f"{call} gave NaN or inf.", params)
    return output.detach()


def _check_logits(model: nn.Module, name: str, images: torch.Tensor, params: Params) -> None:
    """The output must be unbounded logits: training can push it below 0 and above 1."""
    check = "test_discriminator"
    for direction, target in ((-1.0, -1.0), (1.0, 2.0)):
        reached = _push_output(
            model,
            images,
            direction,
            lambda out, d=direction, t=target: d * float(out.mean()) > d * t,
        )
        mean = float(reached.mean())
        word, side = ("down", "below") if direction < 0 else ("up", "above")
        _require(
            direction * mean > direction * target,
            check,
            f"the outputs look bounded (a final sigmoid?): training {name}(10) with Adam to push "
            f"its mean output {word} left it at {mean:.4f}, expected it to get {side} {target:g}. "
            "The discriminator must return raw logits: the loss (BCEWithLogitsLoss) applies "
            "the sigmoid.",
            params,
        )


@_deterministic
def test_generator(Generator: Callable[..., nn.Module]) -> None:  # noqa: N803
    """Generator(z_size, conv_dim) maps z to (N, 3, 32, 32) images in [-1, 1] that depend on z."""
    check = "test_generator"
    name = getattr(Generator, "__name__", "Generator")
    configs, batch_sizes = ((100, 64), (25, 10)), (1, 16)
    for z_size, conv_dim in configs:
        params = {"z_size": z_size, "conv_dim": conv_dim, "image_size": 32}
        model = _build(check, Generator, (z_size, conv_dim), params)
        for n in batch_sizes:
            for z_shape in ((n, z_size), (n, z_size, 1, 1)):
                z = torch.randn(z_shape)
                images = _generate(model, f"{name}({z_size}, {conv_dim})", z, params)
    # `model`, `z` and `images` are from the last loop: z_size 25, conv_dim 10, N=16.
    params = {"z_size": 25, "conv_dims": (64, 10), "image_size": 32}
    wide = _build(check, Generator, (25, 64), params)
    _require(
        _n_parameters(wide) != _n_parameters(model),
        check,
        f"conv_dim is ignored: {name}(25, 64) and {name}(25, 10) both have "
        f"{_n_parameters(model)} parameters; expected the layer widths to scale with conv_dim.",
        params,
    )
    params = {"z_size": 25, "conv_dim": 10, "image_size": 32, "batch_size": 16}
    _require(
        bool((images != images[0]).any()),
        check,
        "the output ignores z: 16 different z gave the same image; expected different "
        "z to give different images.",
        params,
    )
    _check_deterministic(model, name, z, params)
    _check_tanh_range(model, name, z, params)
    _passed(
        check,
        {
            "(z_size, conv_dim)": configs,
            "image_size": 32,
            "batch_sizes": batch_sizes,
            "z shapes": "(N, z_size) and (N, z_size, 1, 1)",
            "range": "[-1, 1], fully used",
        },
    )


def _generate(model: nn.Module, call: str, z: torch.Tensor, params: Params) -> torch.Tensor:
    """model(z), checked to be finite images (N, 3, 32, 32) within [-1, 1]."""
    check, n, shape = "test_generator", len(z), tuple(z.shape)
    params = {**params, "batch_size": n}
    hint = (
        "A Generator(z_size, conv_dim) must accept z of shape (N, z_size) and (N, z_size, 1, 1) "
        "in train mode, N=1 included (avoid BatchNorm1d on a flat layer and fixed batch sizes)."
    )
    images = _call(check, f"{call} on z of shape {shape}", params, model, z, hint=hint)
    _require(
        isinstance(images, torch.Tensor) and tuple(images.shape) == (n, 3, 32, 32),
        check,
        f"{call} on z of shape {shape} gave shape {tuple(getattr(images, 'shape', ()))}; expected "
        f"({n}, 3, 32, 32).",
        params,
    )
    images = images.detach()
    _require(bool(torch.isfinite(images).all()), check, f"{call} gave NaN or inf.", params)
    low, high = float(images.min()), float(images.max())
    _require(
        low >= -1 - RANGE_TOLERANCE and high <= 1 + RANGE_TOLERANCE,
        check,
        f"{call} gave values in [{low:.3f}, {high:.3f}], outside [-1, 1]: the last layer needs "
        "a tanh so the images match the training data's range.",
        params,
    )
    return images.detach()


def _check_deterministic(model: nn.Module, name: str, z: torch.Tensor, params: Params) -> None:
    """In eval mode an image depends on its z alone, so the same z gives the same image."""
    model.eval()
    with torch.no_grad():
        first, second = model(z), model(z)
    model.train()
    _require(
        torch.equal(first, second),
        "test_generator",
        f"{name}(25, 10) in eval mode gave different images for the same z: the output must be a "
        "function of z alone (no noise drawn inside forward).",
        params,
    )


def _check_tanh_range(model: nn.Module, name: str, z: torch.Tensor, params: Params) -> None:
    """Pushed up and down by training, the output must stay within [-1, 1] yet reach near ±1."""
    check = "test_generator"
    for direction in (1.0, -1.0):
        reached = _push_output(
            model,
            z,
            direction,
            lambda out, d=direction: float((d * out).max()) > 0.95,
        )
        extreme = float((direction * reached).max()) * direction
        word, bound = ("up", 1.0) if direction > 0 else ("down", -1.0)
        _require(
            abs(extreme) <= 1 + RANGE_TOLERANCE,
            check,
            f"training {name}(25, 10) with Adam to push its output {word} gave {extreme:.3f}, "
            "outside [-1, 1]: the last layer needs a tanh.",
            params,
        )
        _require(
            abs(extreme) > 0.9,
            check,
            f"the output range is not [-1, 1]: training {name}(25, 10) with Adam to push its "
            f"output {word} only reached {extreme:.3f}, expected to get close to {bound:g}. "
            "Use tanh as the last layer (a sigmoid gives [0, 1]).",
            params,
        )


@_deterministic
def test_weights_init(weights_init_normal: Callable[[nn.Module], None]) -> None:
    """model.apply(weights_init_normal) draws conv and linear weights from N(0, 0.02)."""
    check = "test_weights_init"
    # Small fan-ins, so that PyTorch's default init (uniform, std ~ 1/sqrt(3 * fan_in))
    # is far from std 0.02 for every layer kind; a few thousand weights each make the
    # sample statistics exact enough for tight bounds.
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
    layers = ", ".join(type(layer).__name__ for layer in model)
    _call(
        check,
        "model.apply(weights_init_normal)",
        {"model": layers},
        model.apply,
        weights_init_normal,
    )
    for index, layer in enumerate(model):
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            _check_normal_weights(f"{type(layer).__name__} (layer {index})", layer.weight.detach())
        elif isinstance(layer, nn.BatchNorm2d):
            _check_batchnorm(f"{type(layer).__name__} (layer {index})", layer.weight.detach())
    _passed(
        check,
        {
            "layers": "Conv2d, ConvTranspose2d, Linear, BatchNorm2d",
            "expected": "weight mean 0, std 0.02 (0.015..0.025)",
        },
    )


def _check_normal_weights(layer: str, weight: torch.Tensor) -> None:
    check = "test_weights_init"
    mean, std = float(weight.mean()), float(weight.std())
    params = {"layer": layer, "weights": weight.numel(), "mean": f"{mean:.4f}", "std": f"{std:.4f}"}
    _require(
        0.015 <= std <= 0.025,
        check,
        f"the weights of {layer} have std {std:.4f}; expected 0.02 (0.015..0.025). "
        + (
            "They look like PyTorch's default init: is this layer type initialised?"
            if 0.03 < std < 0.1
            else "Use nn.init.normal_(m.weight, 0.0, 0.02)."
        ),
        params,
    )
    _require(
        abs(mean) < 0.005,
        check,
        f"the weights of {layer} have mean {mean:.4f}; expected 0 (normal_(w, mean=0.0, "
        "std=0.02): are mean and std swapped?).",
        params,
    )
    # About 68% of a normal sample lies within one std of the mean; 58% of a uniform one.
    within = float(((weight - mean).abs() < std).float().mean())
    _require(
        0.63 < within < 0.74,
        check,
        f"the weights of {layer} do not look normal: {within:.1%} lie within one std of the "
        "mean, expected about 68% (a uniform distribution gives 58%). Draw them from a normal "
        "distribution.",
        params,
    )


def _check_batchnorm(layer: str, weight: torch.Tensor) -> None:
    mean = float(weight.mean())
    _require(
        abs(mean - 1) < 0.1,
        "test_weights_init",
        f"the BatchNorm scale (weight) of {layer} has mean {mean:.4f}; expected about 1 "
        "(left alone, or N(1, 0.02)): a scale near 0 switches the layer's output off. "
        "Only conv and linear weights get N(0, 0.02).",
        {"layer": layer},
    )


# --- losses and optimizers ------------------------------------------------------------------


@_deterministic
def test_losses(real_loss: Callable[..., Any], fake_loss: Callable[..., Any]) -> None:
    """real_loss and fake_loss are the batch mean of BCE on logits with labels 1 and 0."""
    check = "test_losses"
    random_logits = torch.randn(16, 1) * 3
    cases = {
        "large positive logits (D sure it is real)": torch.full((16, 1), 10.0),
        "large negative logits (D sure it is fake)": torch.full((16, 1), -10.0),
        "logits all 0 (D unsure)": torch.zeros(16, 1),
        "random logits": random_logits,
        "a batch of one, shape (1, 1)": random_logits[:1],
    }
    for loss_name, loss, label in (("real_loss", real_loss, 1.0), ("fake_loss", fake_loss, 0.0)):
        for case, logits in cases.items():
            _check_loss(loss_name, loss, logits, label, case, smooth=None)
    smooth = _accepts(real_loss, "smooth")
    if smooth:
        for case in ("large positive logits (D sure it is real)", "random logits"):
            _check_loss("real_loss", real_loss, cases[case], 0.9, case, smooth=True)
            _check_loss("real_loss", real_loss, cases[case], 1.0, case, smooth=False)
    _passed(
        check,
        {
            "logits shape": "(16, 1) and (1, 1)",
            "cases": "+10, -10, 0, random",
            "smooth=True": "checked (label 0.9)" if smooth else "skipped (no smooth argument)",
        },
    )


def _check_loss(
    loss_name: str,
    loss: Callable[..., Any],
    logits: torch.Tensor,
    label: float,
    case: str,
    smooth: bool | None,
) -> None:
    """loss(logits) equals mean BCE-with-logits against `label`, and backpropagates."""
    check = "test_losses"
    call = f"{loss_name}(d_out)" if smooth is None else f"{loss_name}(d_out, smooth={smooth})"
    params = {"case": case, "d_out shape": tuple(logits.shape), "label": label}
    d_out = logits.clone().requires_grad_(True)
    args = (d_out,) if smooth is None else (d_out, smooth)
    value = _call(
        check,
        f"{call} on {case}",
        params,
        loss,
        *args,
        hint="d_out holds raw logits of shape (N, 1), N=1 included: use BCEWithLogitsLoss "
        "(BCELoss needs probabilities) with labels shaped like d_out, e.g. "
        "torch.ones_like(d_out).",
    )
    returned = (
        f"a tensor of shape {tuple(value.shape)}"
        if isinstance(value, torch.Tensor)
        else f"a {type(value).__name__}"
    )
    _require(
        isinstance(value, torch.Tensor) and value.numel() == 1,
        check,
        f"{call} returned {returned}; expected a tensor holding one number (the mean over the "
        "batch), connected to d_out for backward().",
        params,
    )
    got = float(value.detach())
    expected = float(F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label)))
    _require(
        math.isfinite(got),
        check,
        f"{call} on {case} returned {got}; expected {expected:.4f}. It seems to expect "
        "probabilities, but the discriminator outputs logits: use BCEWithLogitsLoss.",
        params,
    )
    if not math.isclose(got, expected, rel_tol=1e-3, abs_tol=1e-4):
        hint = _loss_hint(expected, got, label, logits)
        raise _error(check, f"{call} on {case} is {got:.4f}; {hint}", params)
    _require(
        value.requires_grad,
        check,
        f"{call} returned a value with no gradient: the loss must stay a tensor connected to "
        "d_out (no .item(), .detach() or torch.tensor(...) around it).",
        params,
    )
    value.backward()
    _require(
        d_out.grad is not None and bool(d_out.grad.abs().sum() > 0),
        check,
        f"{call} gives no gradient to d_out: the loss must be computed from d_out.",
        params,
    )


def _loss_hint(expected: float, got: float, label: float, logits: torch.Tensor) -> str:
    """Name the likely mistake behind a wrong loss value."""
    text = f"expected {expected:.4f}"
    if bool((logits == 0).all()):
        text += f" (ln 2 = {LN2:.3f}: with logits 0 both losses are ln 2)"

    def bce(target: float, probabilities: torch.Tensor | None = None) -> float:
        targets = torch.full_like(logits, target)
        if probabilities is None:
            return float(F.binary_cross_entropy_with_logits(logits, targets))
        return float(F.binary_cross_entropy(probabilities, targets))

    if got < 0:
        return (
            f"{text}. A cross-entropy is never negative: the loss seems to treat d_out as "
            "probabilities, but the discriminator outputs logits (use BCEWithLogitsLoss)."
        )
    wanted = "real images (label 1)" if label > 0.5 else "fakes (label 0)"
    candidates = [
        (
            label in (0.0, 1.0),
            bce(1 - label),
            f"The labels look swapped: this loss is for {wanted}.",
        ),
        (
            logits.numel() > 1,
            expected * logits.numel(),
            "This is the sum over the batch: use the mean.",
        ),
        (label == 0.9, bce(1.0), "smooth=True is ignored: it should use the real label 0.9."),
        (label == 1.0, bce(0.9), "Label 0.9 is used without smooth=True: the default label is 1."),
        (
            True,
            bce(label, torch.sigmoid(torch.sigmoid(logits))),
            "The sigmoid is applied twice: BCEWithLogitsLoss applies it already.",
        ),
    ]
    for relevant, value, diagnosis in candidates:
        if relevant and math.isclose(got, value, rel_tol=1e-3, abs_tol=1e-4):
            return f"{text}. {diagnosis}"
    return f"{text}: the mean binary cross-entropy of sigmoid(d_out) against label {label:g}."


def test_optimizers(
    d_optimizer: Any,
    g_optimizer: Any,
    discriminator: nn.Module | None = None,
    generator: nn.Module | None = None,
) -> None:
    """One optimizer per network, over that network's parameters, with DCGAN-like settings."""
    check = "test_optimizers"
    optimizers = {"d_optimizer": d_optimizer, "g_optimizer": g_optimizer}
    params: dict[str, object] = {}
    for name, optimizer in optimizers.items():
        _require(
            isinstance(optimizer, torch.optim.Optimizer),
            check,
            f"{name} is a {type(optimizer).__name__}; expected a torch.optim.Optimizer "
            "such as torch.optim.Adam.",
            params,
        )
        _require(
            bool(_parameter_ids(optimizer)),
            check,
            f"{name} has no parameters; expected the network's parameters.",
            params,
        )
        params[f"{name[0]} lr"] = _group_values(optimizer, "lr")
        if all("betas" in group for group in optimizer.param_groups):
            params[f"{name[0]} betas"] = _group_values(optimizer, "betas")
    _require(
        d_optimizer is not g_optimizer,
        check,
        "d_optimizer and g_optimizer are the same object; expected one optimizer per network.",
        params,
    )
    shared = _parameter_ids(d_optimizer) & _parameter_ids(g_optimizer)
    _require(
        not shared,
        check,
        f"d_optimizer and g_optimizer share {len(shared)} parameter tensors; expected each to "
        "hold only its own network's parameters.",
        params,
    )
    given = [name for name, model in (("D", discriminator), ("G", generator)) if model is not None]
    params["parameters matched to models"] = ", ".join(given) or "no models given"
    _check_owners(d_optimizer, g_optimizer, discriminator, generator, params)
    for name, optimizer in optimizers.items():
        for group in optimizer.param_groups:
            _check_settings(name, group, params)
    _passed(check, params)


def _parameter_ids(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


def _group_values(optimizer: torch.optim.Optimizer, key: str) -> object:
    values = [group.get(key) for group in optimizer.param_groups]
    return values[0] if len(values) == 1 else values


def _check_owners(
    d_optimizer: torch.optim.Optimizer,
    g_optimizer: torch.optim.Optimizer,
    discriminator: nn.Module | None,
    generator: nn.Module | None,
    params: Params,
) -> None:
    """Each optimizer holds exactly its own network's trainable parameters."""
    check = "test_optimizers"
    wanted = {
        "discriminator": {id(p) for p in discriminator.parameters() if p.requires_grad}
        if discriminator is not None
        else None,
        "generator": {id(p) for p in generator.parameters() if p.requires_grad}
        if generator is not None
        else None,
    }
    d_ids, g_ids = _parameter_ids(d_optimizer), _parameter_ids(g_optimizer)
    _require(
        not (d_ids == wanted["generator"] or g_ids == wanted["discriminator"]),
        check,
        "the optimizers are swapped: "
        + (
            "d_optimizer holds the generator's parameters"
            if d_ids == wanted["generator"]
            else "g_optimizer holds the discriminator's parameters"
        )
        + "; expected d_optimizer over discriminator.parameters() and g_optimizer over "
        "generator.parameters().",
        params,
    )
    for name, ids, owner in (
        ("d_optimizer", d_ids, "discriminator"),
        ("g_optimizer", g_ids, "generator"),
    ):
        want = wanted[owner]
        if want is None:
            continue
        missing, extra = len(want - ids), len(ids - want)
        _require(
            not missing,
            check,
            f"{name} is missing {missing} of the {owner}'s {len(want)} parameter tensors; "
            f"expected all of {owner}.parameters().",
            params,
        )
        _require(
            not extra,
            check,
            f"{name} holds {extra} parameter tensors that are not the {owner}'s; expected only "
            f"{owner}.parameters().",
            params,
        )


def _check_settings(name: str, group: Mapping[str, Any], params: Params) -> None:
    """A learning rate in the usual GAN range, and Adam's beta1 well below 0.9."""
    check = "test_optimizers"
    lr = group.get("lr")
    _require(
        isinstance(lr, float | int) and 1e-5 <= lr <= 1e-3,
        check,
        f"{name} has lr {lr}; expected 1e-5..1e-3 (DCGAN uses 2e-4). GANs diverge with a large "
        "lr and barely move with a tiny one.",
        params,
    )
    betas = group.get("betas")
    if betas is None:
        return
    beta1 = float(betas[0])
    # Adam's default beta1 = 0.9 is the classic pitfall: the momentum lags behind the
    # opponent's moves and training oscillates. The DCGAN paper found 0.5 stable.
    _require(
        beta1 < 0.9,
        check,
        f"{name} has beta1 {beta1} (betas {tuple(betas)}); expected 0.5 as in DCGAN: Adam's "
        "default 0.9 makes GAN training oscillate. Pass betas=(0.5, 0.999).",
        params,
    )
    if beta1 != 0.5:
        warnings.warn(
            f"test_optimizers: {name} has beta1 {beta1}; DCGAN uses 0.5.", UserWarning, stacklevel=3
        )


# --- training step --------------------------------------------------------------------------

STEP_KEYS = ("d_loss", "g_loss", "d_real", "d_fake")
STEP_LR = 2e-4


@_deterministic
def test_training_step(train_step: Callable[..., Any]) -> None:
    """train_step(D, G, d_optimizer, g_optimizer, real_images, z) does one D and one G update."""
    check = "test_training_step"
    batch_size, z_size = 8, 16
    params = {
        "image_size": 16,
        "batch_size": batch_size,
        "z_size": z_size,
        "optimizers": f"Adam(lr={STEP_LR}, betas=(0.5, 0.999))",
    }
    d_start, g_start = _TinyDiscriminator(), _small_generator(z_size)
    # Bright real images (mean 0.7): the discriminator scores them above the grey fakes.
    real_images = (torch.rand(batch_size, 3, 16, 16) * 0.6 + 0.4).clamp(-1, 1)
    z = torch.randn(batch_size, z_size)
    stats, d_after, g_after = _run_step(train_step, d_start, g_start, real_images, z, params)
    _check_stats(stats, d_start, g_start, real_images, z, params)

    # (a) Both networks must move: a missing optimizer.step() leaves one unchanged.
    _require(
        _max_difference(d_start, d_after) > 0,
        check,
        "the discriminator's parameters did not change: call d_optimizer.step() after "
        "d_loss.backward() (and zero_grad() before backward, not between backward and step).",
        params,
    )
    _require(
        _max_difference(g_start, g_after) > 0,
        check,
        "the generator's parameters did not change: call g_optimizer.step() after "
        "g_loss.backward() (zero_grad() goes before backward, and g_loss must be computed on "
        "fakes that are not detached).",
        params,
    )
    _check_directions(d_start, g_start, d_after, g_after, real_images, z, params)

    # (b) Gradients must be cleared before each backward: stale ones would add to the new.
    # Leftover .grad values must not change the result of the step.
    for net in ("discriminator", "generator"):
        _, d_dirty, g_dirty = _run_step(
            train_step, d_start, g_start, real_images, z, params, stale_grads=net
        )
        clean, dirty = (d_after, d_dirty) if net == "discriminator" else (g_after, g_dirty)
        optimizer = "d_optimizer" if net == "discriminator" else "g_optimizer"
        loss = "d_loss" if net == "discriminator" else "g_loss"
        _require(
            _max_difference(clean, dirty) < STEP_LR / 100,
            check,
            f"old gradients change the {net}'s update: they accumulate. Call "
            f"{optimizer}.zero_grad() before {loss}.backward().",
            params,
        )
    _passed(
        check,
        {
            **params,
            "checked": "stats, both networks updated, update directions, zero_grad",
        },
    )


class _TinyDiscriminator(nn.Module):
    """A small DCGAN-style discriminator for 16x16 images; outputs (N, 1) logits.

    Its brightness term scores the bright real batch (mean 0.7) about +1.4 and the untrained
    generator's grey fakes (mean 0) about -1.4. So d_real and d_fake differ clearly, and the
    gradients of the right and of the swapped labels point in opposite directions, which
    makes a step with swapped labels raise the right loss.
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

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        brightness = images.mean(dim=(1, 2, 3)).unsqueeze(1) - self.MIDPOINT
        return self.features(images) + self.brightness * brightness


def _small_generator(z_size: int) -> nn.Module:
    """A tiny DCGAN-style generator: z (N, z_size) to (N, 3, 16, 16) images in [-1, 1]."""
    return nn.Sequential(
        nn.Unflatten(1, (z_size, 1, 1)),
        nn.ConvTranspose2d(z_size, 16, 4, 1, 0),
        nn.ReLU(),
        nn.ConvTranspose2d(16, 8, 4, 2, 1),
        nn.ReLU(),
        nn.ConvTranspose2d(8, 3, 4, 2, 1),
        nn.Tanh(),
    )


def _run_step(
    train_step: Callable[..., Any],
    d_start: nn.Module,
    g_start: nn.Module,
    real_images: torch.Tensor,
    z: torch.Tensor,
    params: Params,
    stale_grads: str | None = None,
) -> tuple[Any, nn.Module, nn.Module]:
    """One train_step on fresh copies of the networks and optimizers.

    stale_grads names a network whose .grad is pre-filled with junk, as a previous step
    would leave it. The step runs under a fixed seed so that runs differ only by that.
    """
    discriminator, generator = copy.deepcopy(d_start), copy.deepcopy(g_start)
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=STEP_LR, betas=(0.5, 0.999))
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=STEP_LR, betas=(0.5, 0.999))
    if stale_grads is not None:
        stale = discriminator if stale_grads == "discriminator" else generator
        for p in stale.parameters():
            p.grad = torch.full_like(p, 10.0)
    with _seeded(SEED + 1):
        stats = _call(
            "test_training_step",
            "train_step(discriminator, generator, d_optimizer, g_optimizer, real_images, z)",
            params,
            train_step,
            discriminator,
            generator,
            d_optimizer,
            g_optimizer,
            real_images.clone(),
            z.clone(),
        )
    return stats, discriminator, generator


def _check_stats(
    stats: Any,
    d_start: nn.Module,
    g_start: nn.Module,
    real_images: torch.Tensor,
    z: torch.Tensor,
    params: Params,
) -> None:
    """Finite losses; d_real and d_fake are the mean probabilities D gave before its update."""
    check = "test_training_step"
    _require(
        isinstance(stats, Mapping),
        check,
        f"train_step returned a {type(stats).__name__}; expected a dict with keys {STEP_KEYS}.",
        params,
    )
    missing = [key for key in STEP_KEYS if key not in stats]
    _require(not missing, check, f"the returned dict is missing keys {missing}.", params)
    values = {}
    for key in STEP_KEYS:
        values[key] = _call(check, f"float(stats[{key!r}])", params, _number, stats[key])
        _require(
            math.isfinite(values[key]),
            check,
            f"stats[{key!r}] is {values[key]}, not finite.",
            params,
        )
    with torch.no_grad():
        expected = {
            "d_real": float(torch.sigmoid(d_start(real_images)).mean()),
            "d_fake": float(torch.sigmoid(d_start(g_start(z))).mean()),
        }
    for key, images in (("d_real", "real_images"), ("d_fake", "G(z)")):
        value = values[key]
        _require(
            0 <= value <= 1,
            check,
            f"stats[{key!r}] is {value:.4f}, outside [0, 1]; expected the mean probability "
            f"sigmoid(D({images})).mean() = {expected[key]:.4f}. Raw logits need a sigmoid.",
            params,
        )
        other = "d_fake" if key == "d_real" else "d_real"
        hint = " d_real and d_fake look swapped." if abs(value - expected[other]) < 0.01 else ""
        _require(
            abs(value - expected[key]) < 0.01,
            check,
            f"stats[{key!r}] is {value:.4f}; expected sigmoid(D({images})).mean() = "
            f"{expected[key]:.4f}, the mean probability of 'real' D gives.{hint}",
            params,
        )


def _number(value: Any) -> float:
    """A float from a float or a one-element tensor (detached, on any device)."""
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def _check_directions(
    d_start: nn.Module,
    g_start: nn.Module,
    d_after: nn.Module,
    g_after: nn.Module,
    real_images: torch.Tensor,
    z: torch.Tensor,
    params: Params,
) -> None:
    """D's step must make D better at telling real from fake; G's step must fool that D more.

    With a small learning rate one optimizer step always lowers its own loss, so a loss
    that went up means the step trained towards the wrong labels.
    """
    check = "test_training_step"
    with torch.no_grad():
        fakes = g_start(z)
        before = _discriminator_loss(d_start, real_images, fakes)
        after = _discriminator_loss(d_after, real_images, fakes)
        _require(
            after < before,
            check,
            f"the discriminator step made D worse: its loss on the same batch went from "
            f"{before:.6f} to {after:.6f}. Are the labels swapped? D should learn real images "
            "-> 1 (real_loss) and G(z) -> 0 (fake_loss).",
            params,
        )
        # Judged by the updated discriminator, which the generator step trained against.
        before = _generator_loss(d_after, fakes)
        after = _generator_loss(d_after, g_after(z))
        _require(
            after < before,
            check,
            f"the generator step made D less fooled: G's loss real_loss(D(G(z))) against the "
            f"updated D went from {before:.6f} to {after:.6f}. Are the labels swapped? G should "
            "learn to make D say real: g_loss = real_loss(D(G(z))).",
            params,
        )


def _generator_loss(model: nn.Module, fake: torch.Tensor) -> float:
    logits = model(fake)
    return float(F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits)))


def _discriminator_loss(model: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> float:
    real_logits, fake_logits = model(real), model(fake)
    real_part = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake_part = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return float(real_part + fake_part)
