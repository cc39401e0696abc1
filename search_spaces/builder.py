"""The only code that knows how an `ArchSpec` becomes torch layers."""

from __future__ import annotations

import torch
from torch import nn

from search_spaces.arch_spec import (
    ArchSpec,
    BlockSpec,
    HeadSpec,
    LayerKey,
    StemSpec,
    se_channels,
)


def make_activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "hswish":
        return nn.Hardswish(inplace=True)
    raise ValueError(f"unknown activation {name!r}")


class ConvBNAct(nn.Sequential):
    """Convolution without bias, BatchNorm, optional activation ('same' padding)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        activation: str | None = None,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        if activation is not None:
            layers.append(make_activation(activation))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """MobileNetV3 squeeze-and-excite: global pool, reduce (ReLU), expand, hard-sigmoid gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        squeezed = se_channels(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.expand(self.act(self.reduce(self.pool(x)))))
        return x * scale


class DepthwiseSeparable(nn.Module):
    def __init__(self, in_channels: int, spec: BlockSpec) -> None:
        super().__init__()
        self.depthwise = ConvBNAct(
            in_channels, in_channels, spec.kernel, spec.stride, groups=in_channels, activation=spec.activation
        )
        self.pointwise = ConvBNAct(in_channels, spec.out_channels, 1, activation=spec.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class InvertedResidual(nn.Module):
    def __init__(self, in_channels: int, spec: BlockSpec) -> None:
        super().__init__()
        mid = spec.mid_channels
        self.expand = ConvBNAct(in_channels, mid, 1, activation=spec.activation) if mid != in_channels else None
        self.depthwise = ConvBNAct(mid, mid, spec.kernel, spec.stride, groups=mid, activation=spec.activation)
        self.se = SqueezeExcite(mid) if spec.se else None
        self.project = ConvBNAct(mid, spec.out_channels, 1, activation=None)
        self.residual = spec.has_residual(in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expand is None else self.expand(x)
        out = self.depthwise(out)
        if self.se is not None:
            out = self.se(out)
        out = self.project(out)
        return out + x if self.residual else out


class Head(nn.Module):
    def __init__(self, in_channels: int, spec: HeadSpec) -> None:
        super().__init__()
        channels = in_channels
        self.conv = None
        if spec.conv_channels:
            self.conv = ConvBNAct(channels, spec.conv_channels, 1, activation=spec.activation)
            channels = spec.conv_channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.hidden = None
        if spec.hidden_channels:
            self.hidden = nn.Sequential(nn.Linear(channels, spec.hidden_channels), make_activation(spec.activation))
            channels = spec.hidden_channels
        self.dropout = nn.Dropout(spec.dropout)
        self.classifier = nn.Linear(channels, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv(x)
        x = torch.flatten(self.pool(x), 1)
        if self.hidden is not None:
            x = self.hidden(x)
        return self.classifier(self.dropout(x))


def build_stem(in_channels: int, spec: StemSpec) -> nn.Module:
    return ConvBNAct(in_channels, spec.out_channels, spec.kernel, spec.stride, activation=spec.activation)


def build_block(in_channels: int, spec: BlockSpec) -> nn.Module:
    if spec.kind == "ds":
        return DepthwiseSeparable(in_channels, spec)
    return InvertedResidual(in_channels, spec)


class Network(nn.Module):
    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        self.stem = build_stem(spec.in_channels, spec.stem)
        blocks = []
        channels = spec.stem.out_channels
        for block in spec.blocks:
            blocks.append(build_block(channels, block))
            channels = block.out_channels
        self.blocks = nn.Sequential(*blocks)
        self.head = Head(channels, spec.head)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def _init_weights(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, 0.01)
            nn.init.zeros_(layer.bias)


def build_model(spec: ArchSpec) -> Network:
    return Network(spec)


def build_layer(key: LayerKey) -> nn.Module:
    """One layer alone, as the latency profiler times it."""
    if isinstance(key.layer, StemSpec):
        module = build_stem(key.in_channels, key.layer)
    elif isinstance(key.layer, HeadSpec):
        module = Head(key.in_channels, key.layer)
    else:
        module = build_block(key.in_channels, key.layer)
    _init_weights(module)
    return module
