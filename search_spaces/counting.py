"""Analytic parameter and multiply-add counts.

Conventions (the MobileNet papers'): multiply-adds count every convolution and fully connected
layer, including squeeze-and-excite's 1x1 layers; BatchNorm, activations, pooling and the residual
add are not counted. Parameters count everything trainable, BatchNorm's scale and shift included.
`count_with_hooks` measures the same quantities on a built module so the two can be checked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from search_spaces.arch_spec import (
    ArchSpec,
    BlockSpec,
    HeadSpec,
    LayerKey,
    StemSpec,
    conv_output_size,
    se_channels,
)


@dataclass(frozen=True)
class Counts:
    params: int
    madds: int

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.params + other.params, self.madds + other.madds)


ZERO = Counts(0, 0)


def _conv(
    in_ch: int, out_ch: int, kernel: int, out_size: int, groups: int = 1, bias: bool = False, bn: bool = True
) -> Counts:
    weights = out_ch * (in_ch // groups) * kernel * kernel
    params = weights + (out_ch if bias else 0) + (2 * out_ch if bn else 0)
    return Counts(params, weights * out_size * out_size)


def _linear(in_features: int, out_features: int) -> Counts:
    return Counts(in_features * out_features + out_features, in_features * out_features)


def layer_counts(key: LayerKey) -> Counts:
    """Counts of one layer at the input shape recorded in its key."""
    layer, size, in_ch = key.layer, key.height, key.in_channels
    if isinstance(layer, StemSpec):
        out = conv_output_size(size, layer.kernel, layer.stride)
        return _conv(in_ch, layer.out_channels, layer.kernel, out)
    if isinstance(layer, HeadSpec):
        total, channels = ZERO, in_ch
        if layer.conv_channels:
            total += _conv(channels, layer.conv_channels, 1, size)
            channels = layer.conv_channels
        if layer.hidden_channels:
            total += _linear(channels, layer.hidden_channels)
            channels = layer.hidden_channels
        return total + _linear(channels, layer.num_classes)
    return _block_counts(layer, size, in_ch)


def _block_counts(block: BlockSpec, size: int, in_ch: int) -> Counts:
    out = conv_output_size(size, block.kernel, block.stride)
    if block.kind == "ds":
        return _conv(in_ch, in_ch, block.kernel, out, groups=in_ch) + _conv(in_ch, block.out_channels, 1, out)
    mid = block.mid_channels
    total = ZERO
    if mid != in_ch:
        total += _conv(in_ch, mid, 1, size)
    total += _conv(mid, mid, block.kernel, out, groups=mid)
    if block.se:
        squeezed = se_channels(mid)
        total += _conv(mid, squeezed, 1, 1, bias=True, bn=False)
        total += _conv(squeezed, mid, 1, 1, bias=True, bn=False)
    return total + _conv(mid, block.out_channels, 1, out)


def count_spec(spec: ArchSpec) -> Counts:
    total = ZERO
    for key in spec.layer_keys():
        total += layer_counts(key)
    return total


def count_with_hooks(module: nn.Module, input_shape: tuple[int, ...]) -> Counts:
    """Measure parameters and multiply-adds of a module by running it once with forward hooks."""
    madds = 0

    def on_conv(layer: nn.Conv2d, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal madds
        per_output = (layer.in_channels // layer.groups) * layer.kernel_size[0] * layer.kernel_size[1]
        madds += output[0].numel() * per_output

    def on_linear(layer: nn.Linear, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal madds
        madds += layer.in_features * layer.out_features

    handles = []
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            handles.append(layer.register_forward_hook(on_conv))
        elif isinstance(layer, nn.Linear):
            handles.append(layer.register_forward_hook(on_linear))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(torch.zeros(input_shape))
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)
    params = sum(p.numel() for p in module.parameters())
    return Counts(params, madds)
