"""FLOPs of one DCGAN training step, counted from the layer shapes, and GPU peaks to compare."""

from __future__ import annotations

import math

import torch
from torch import nn

# Dense (no sparsity) bf16 tensor-core peak, TFLOP/s, by torch.cuda.get_device_name(). The
# H100 SXM's 989 is NVIDIA's datasheet figure; the H200 is the same chip at the same clocks.
PEAK_BF16_TFLOPS = {"NVIDIA H100 80GB HBM3": 989.0, "NVIDIA H200": 989.0}
FLOP_FORMULA = (
    "per image, MACs x 2: forward G + 3 D (real, detached fake, fake for the G step); "
    "backward = weight grads (1x forward) + input grads (1x forward) of every pass, except the "
    "input grad of a first layer whose input needs none (G on z, D on real, D on detached "
    "fake): 3G + 9D - G0 - 2D0. Only conv and conv-transpose layers are counted."
)


def conv_layer_macs(model: nn.Module, example: torch.Tensor) -> list[int]:
    """Multiply-accumulates per image of each conv / conv-transpose layer, in forward order.

    Read from the shapes seen in one forward pass of `example`. A conv does C_in/groups x k x k
    MACs per output element; a transposed conv does C_out/groups x k x k per input element.
    """
    counts: list[int] = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        kernel = math.prod(module.kernel_size)
        if isinstance(module, nn.ConvTranspose2d):
            per_image = inputs[0][0].numel()
            fan = module.out_channels // module.groups
        else:
            per_image = output[0].numel()
            fan = module.in_channels // module.groups
        counts.append(per_image * fan * kernel)

    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    handles = [layer.register_forward_hook(hook) for layer in layers]
    was_training = model.training
    try:
        model.eval()  # eval BatchNorm accepts a batch of one
        with torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return counts


def step_flops(generator: nn.Module, discriminator: nn.Module, z_size: int, size: int) -> dict:
    """GFLOP per image: G forward, D forward and one whole training step (FLOP_FORMULA)."""
    g_layers = conv_layer_macs(generator, torch.zeros(1, z_size, 1, 1))
    d_layers = conv_layer_macs(discriminator, torch.zeros(1, 3, size, size))
    g, d = sum(g_layers), sum(d_layers)
    step_macs = 3 * g + 9 * d - g_layers[0] - 2 * d_layers[0]
    return {
        "g_forward_gflop": 2 * g / 1e9,
        "d_forward_gflop": 2 * d / 1e9,
        "step_gflop": 2 * step_macs / 1e9,
        "g_layer_macs": g_layers,
        "d_layer_macs": d_layers,
        "formula": FLOP_FORMULA,
    }


def peak_bf16_tflops(gpu_name: str | None) -> float | None:
    """The GPU's dense bf16 peak from PEAK_BF16_TFLOPS; None when the name is not listed."""
    return PEAK_BF16_TFLOPS.get(gpu_name or "")
