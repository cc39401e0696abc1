"""Narrowing a trained network: keep the channels whose filters have the largest L1 norm.

NetAdapt (and filter pruning, Li et al. 2017) keep a layer's filters with the largest L1 norm. A group
of tied channels (a residual chain) is written by several layers, so each writer's per-channel norms
are divided by their mean (every layer votes equally, whatever its weight scale) and summed. Every
reader of a kept channel keeps the matching input slice: convolutions, BatchNorm (weights and
running statistics), depthwise convolutions, squeeze-and-excite (whose squeeze width follows the new
expansion width and keeps its own largest-norm channels), and the head's linear layers.
"""

from __future__ import annotations

import torch
from torch import nn

from nas.netadapt.groups import channel_groups, field_widths
from search_spaces.arch_spec import ArchSpec
from search_spaces.builder import Network, build_model


def filter_l1_norms(weight: torch.Tensor) -> torch.Tensor:
    """L1 norm of each output filter (dimension 0) of a conv or linear weight."""
    return weight.detach().abs().reshape(weight.shape[0], -1).sum(dim=1)


def select_channels(importance: torch.Tensor, keep: int) -> torch.Tensor:
    """Indexes of the `keep` most important channels, in their original order (ties: lower index)."""
    if not 1 <= keep <= len(importance):
        raise ValueError(f"cannot keep {keep} of {len(importance)} channels")
    order = torch.argsort(importance, descending=True, stable=True)
    return torch.sort(order[:keep]).values


def _writers(model: Network, spec: ArchSpec, field: str) -> list[torch.Tensor]:
    """Weights of the full (not depthwise) layers whose outputs are the channels of `field`."""
    if field == "stem.out":
        return [model.stem[0].weight]
    if field == "head.conv":
        return [model.head.conv[0].weight]
    if field == "head.hidden":
        return [model.head.hidden[0].weight]
    _, index, part = field.split(".")
    block = model.blocks[int(index)]
    if part == "out":
        return [block.pointwise[0].weight if spec.blocks[int(index)].kind == "ds" else block.project[0].weight]
    expand = getattr(block, "expand", None)
    return [expand[0].weight] if expand is not None else []


def _check_compatible(model: nn.Module, old_spec: ArchSpec, new_spec: ArchSpec) -> None:
    if not isinstance(model, Network) or len(model.blocks) != len(old_spec.blocks):
        raise ValueError("model must be the Network built from old_spec")
    if model.stem[0].out_channels != old_spec.stem.out_channels:
        raise ValueError("model's stem width differs from old_spec's: it was not built from old_spec")

    def shape_of(spec: ArchSpec) -> tuple:
        stripped = spec.model_dump(exclude={"name"})
        stripped["stem"].pop("out_channels")
        for block in stripped["blocks"]:
            block.pop("mid_channels")
            block.pop("out_channels")
        head = stripped["head"]
        head["conv_channels"], head["hidden_channels"] = bool(head["conv_channels"]), bool(head["hidden_channels"])
        return repr(stripped)

    if shape_of(old_spec) != shape_of(new_spec):
        raise ValueError("new_spec must differ from old_spec only in channel counts")


def kept_channels(model: Network, old_spec: ArchSpec, new_spec: ArchSpec) -> dict[str, torch.Tensor]:
    """For every channel field of `old_spec`: the indexes of the channels `new_spec` keeps."""
    new_widths = field_widths(new_spec)
    kept: dict[str, torch.Tensor] = {}
    for group in channel_groups(old_spec):
        widths = {new_widths.get(field) for field in group.fields}
        if len(widths) != 1:
            raise ValueError(f"new_spec gives the tied fields {group.name} different widths {sorted(map(str, widths))}")
        (width,) = widths
        if width is None or width > group.width:
            raise ValueError(f"{group.name}: cannot grow or remove channels of width {group.width} to {width}")
        importance = torch.zeros(group.width)
        for field in group.fields:
            for weight in _writers(model, old_spec, field):
                norms = filter_l1_norms(weight).float().cpu()
                importance += norms / norms.mean().clamp_min(1e-12)
        indexes = select_channels(importance, width)
        kept.update(dict.fromkeys(group.fields, indexes))
    return kept


@torch.no_grad()
def _copy_conv(new: nn.Conv2d, old: nn.Conv2d, out_idx: torch.Tensor, in_idx: torch.Tensor | None) -> None:
    """`in_idx` None: a depthwise conv, whose filters follow their own channel."""
    weight = old.weight[out_idx]
    new.weight.copy_(weight if in_idx is None else weight[:, in_idx])
    if old.bias is not None:
        new.bias.copy_(old.bias[out_idx])


@torch.no_grad()
def _copy_bn(new: nn.BatchNorm2d, old: nn.BatchNorm2d, idx: torch.Tensor) -> None:
    new.weight.copy_(old.weight[idx])
    new.bias.copy_(old.bias[idx])
    new.running_mean.copy_(old.running_mean[idx])
    new.running_var.copy_(old.running_var[idx])
    new.num_batches_tracked.copy_(old.num_batches_tracked)


@torch.no_grad()
def _copy_linear(new: nn.Linear, old: nn.Linear, out_idx: torch.Tensor, in_idx: torch.Tensor) -> None:
    new.weight.copy_(old.weight[out_idx][:, in_idx])
    new.bias.copy_(old.bias[out_idx])


def _copy_conv_bn(new: nn.Sequential, old: nn.Sequential, out_idx: torch.Tensor, in_idx: torch.Tensor | None) -> None:
    _copy_conv(new[0], old[0], out_idx, in_idx)
    _copy_bn(new[1], old[1], out_idx)


def prune_model(model: nn.Module, old_spec: ArchSpec, new_spec: ArchSpec) -> Network:
    """A new network for `new_spec` holding `model`'s weights for the channels it keeps.

    `model` must be the `Network` of `old_spec`; `new_spec` may only narrow channel counts, keeping
    tied fields tied (what `apply_widths` produces). With no channel removed, the copy computes
    exactly what `model` computes. The copy is in `model`'s train/eval mode and on its device.
    """
    _check_compatible(model, old_spec, new_spec)
    kept = kept_channels(model, old_spec, new_spec)
    reference = next(model.parameters())
    pruned = build_model(new_spec).to(device=reference.device, dtype=reference.dtype)
    kept = {field: idx.to(reference.device) for field, idx in kept.items()}
    previous = torch.arange(old_spec.in_channels, device=reference.device)
    _copy_conv_bn(pruned.stem, model.stem, kept["stem.out"], previous)
    previous = kept["stem.out"]
    for index, (block, new_block, old_block) in enumerate(
        zip(old_spec.blocks, pruned.blocks, model.blocks, strict=True)
    ):
        out_idx = kept[f"blocks.{index}.out"]
        if block.kind == "ds":
            _copy_conv_bn(new_block.depthwise, old_block.depthwise, previous, None)
            _copy_conv_bn(new_block.pointwise, old_block.pointwise, out_idx, previous)
        else:
            mid_idx = kept[f"blocks.{index}.mid"]
            if old_block.expand is not None:
                _copy_conv_bn(new_block.expand, old_block.expand, mid_idx, previous)
            _copy_conv_bn(new_block.depthwise, old_block.depthwise, mid_idx, None)
            if old_block.se is not None:
                squeeze = new_block.se.reduce.out_channels  # the builder derives it from the new mid width
                squeeze_idx = select_channels(filter_l1_norms(old_block.se.reduce.weight[:, mid_idx]).cpu(), squeeze)
                squeeze_idx = squeeze_idx.to(reference.device)
                _copy_conv(new_block.se.reduce, old_block.se.reduce, squeeze_idx, mid_idx)
                _copy_conv(new_block.se.expand, old_block.se.expand, mid_idx, squeeze_idx)
            _copy_conv_bn(new_block.project, old_block.project, out_idx, mid_idx)
        previous = out_idx
    head, old_head = pruned.head, model.head
    if old_head.conv is not None:
        _copy_conv_bn(head.conv, old_head.conv, kept["head.conv"], previous)
        previous = kept["head.conv"]
    if old_head.hidden is not None:
        _copy_linear(head.hidden[0], old_head.hidden[0], kept["head.hidden"], previous)
        previous = kept["head.hidden"]
    classes = torch.arange(old_spec.head.num_classes, device=reference.device)
    _copy_linear(head.classifier, old_head.classifier, classes, previous)
    return pruned.train(model.training)
