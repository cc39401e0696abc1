"""One weight-sharing network that runs every member of a search space (Once-for-All, BigNAS).

The supernet holds each layer at its largest size over the space's choices: the widest width
multiplier, the largest kernel and expansion, squeeze-and-excite present, every stage at its
deepest. A member runs inside it by taking

- channels: the first N of every layer (stem, expansion, depthwise, SE squeeze, projection, head),
  so a narrow network is the leading slice of a wide one;
- kernels: the centred k x k of the largest depthwise kernel (optionally through OFA's learned
  kernel transform, `kernel_transform=True`);
- depth: the first d block slots of each stage;
- activation and SE per block, as the member's spec says.

A member is addressed by its `ArchSpec` or its genome; `space.encode` maps the spec's blocks to the
supernet's slots, so a spec the space cannot express is refused. Weights do not depend on the input
resolution (global pooling before the head), so a member runs at any image size, e.g. the search's
proxy resolution.

BatchNorm: the running statistics a supernet accumulates mix every member it trained; a member's
own statistics are recomputed (`calibrate`) on a few hundred training images before it is scored.
`extract` copies a member out as a plain `build_model` network, to evaluate, fine-tune or export.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.arch_spec import ArchSpec, BlockSpec, HeadSpec, se_channels
from search_spaces.builder import DepthwiseSeparable, InvertedResidual, Network, _init_weights, build_model
from search_spaces.space import SearchSpace

Architecture = ArchSpec | np.ndarray


class UnsupportedSpaceError(ValueError):
    """The space's members cannot share one set of weights (see `weight_sharing_problem`)."""


# --- which spaces can share weights -----------------------------------------------------------------


@dataclass(frozen=True)
class _BlockLayout:
    """One block position at its largest over every width and choice."""

    kind: str
    in_channels: int
    mid_channels: int
    se_channels: int
    out_channels: int
    stride: int
    kernel: int
    has_expand: bool
    has_se: bool


@dataclass(frozen=True)
class _Layout:
    stem_channels: int
    stem_kernel: int
    stem_stride: int
    fixed: tuple[_BlockLayout, ...]
    slots: tuple[_BlockLayout, ...]
    head_conv: int
    head_hidden: int
    num_classes: int


def weight_sharing_problem(space: SearchSpace) -> str | None:
    """Why `space`'s members cannot share one supernet, or None when they can.

    Every space the `SearchSpace` class builds today can: channels nest (a narrower choice is a
    leading slice), strides and stage layout do not depend on resolution or width, every searched
    slot is an inverted residual. What is checked is what the supernet relies on: odd kernels
    (a smaller kernel must be the centre of the largest), inverted-residual slots, per-slot
    strides and fixed-block kinds that do not vary with width or resolution, and a head whose
    layers exist at every width.
    """
    try:
        _layout(space)
    except ValueError as error:  # UnsupportedSpaceError, or a block the space cannot even build
        return str(error)
    return None


def supports_weight_sharing(space: SearchSpace) -> bool:
    return weight_sharing_problem(space) is None


def _layout(space: SearchSpace) -> _Layout:
    even = [k for k in space.kernels if k % 2 == 0]
    if even:
        raise UnsupportedSpaceError(f"kernels {even} are even: a smaller kernel must be the centre of the largest")
    stems = [space.stem_spec(w) for w in space.widths]
    if len({(s.kernel, s.stride) for s in stems}) != 1:
        raise UnsupportedSpaceError("the stem's kernel or stride varies with the width")

    fixed: list[_BlockLayout] = []
    per_width = [space.fixed_block_specs(w) for w in space.widths]
    for index in range(len(space.fixed_blocks)):
        variants = []
        for stem, blocks in zip(stems, per_width, strict=True):
            in_channels = stem.out_channels if index == 0 else blocks[index - 1].out_channels
            variants.append((in_channels, blocks[index]))
        fixed.append(_merge(f"fixed block {index}", variants))

    slots: list[_BlockLayout] = []
    # Per width, per resolution, per stage: the (first block, later blocks) shapes.
    geometry = {w: [space.slot_shapes(r, w) for r in space.resolutions] for w in space.widths}
    for w, by_resolution in geometry.items():
        reference = [[(s.in_channels, s.out_channels, s.stride) for s in pair] for pair in by_resolution[0]]
        for shapes in by_resolution[1:]:
            if [[(s.in_channels, s.out_channels, s.stride) for s in pair] for pair in shapes] != reference:
                raise UnsupportedSpaceError(f"at width {w:g} the stage layout varies with the resolution")
    for stage_i, stage in enumerate(space.stages):
        for j in range(stage.max_depth):
            variants = []
            for w in space.widths:
                shape = geometry[w][0][stage_i][0 if j == 0 else 1]
                for option in range(space.n_options):
                    variants.append((shape.in_channels, space.slot_block(shape, option)))
            kinds = sorted({block.kind for _, block in variants})
            if kinds != ["ir"]:
                raise UnsupportedSpaceError(f"stage {stage_i} block {j} can be {kinds}; searched slots must be 'ir'")
            slots.append(_merge(f"stage {stage_i} block {j}", variants))

    heads = [space.head_spec(w) for w in space.widths]
    for field in ("conv_channels", "hidden_channels"):
        present = {getattr(h, field) > 0 for h in heads}
        if len(present) != 1:
            raise UnsupportedSpaceError(f"the head's {field} is zero at some widths only")
    return _Layout(
        stem_channels=max(s.out_channels for s in stems),
        stem_kernel=stems[0].kernel,
        stem_stride=stems[0].stride,
        fixed=tuple(fixed),
        slots=tuple(slots),
        head_conv=max(h.conv_channels for h in heads),
        head_hidden=max(h.hidden_channels for h in heads),
        num_classes=space.num_classes,
    )


def _merge(where: str, variants: list[tuple[int, BlockSpec]]) -> _BlockLayout:
    """The largest block that holds every (input width, block) variant of one position."""
    kinds = {block.kind for _, block in variants}
    strides = {block.stride for _, block in variants}
    if len(kinds) != 1 or len(strides) != 1:
        raise UnsupportedSpaceError(f"{where}: its kind or stride varies between choices ({kinds}, {strides})")
    kind = kinds.pop()
    kernels = {block.kernel for _, block in variants}
    if kind == "ds" and len(kernels) != 1:
        raise UnsupportedSpaceError(f"{where}: a depthwise-separable block's kernel varies")
    mids = [block.mid_channels for _, block in variants]
    return _BlockLayout(
        kind=kind,
        in_channels=max(c for c, _ in variants),
        mid_channels=max(mids),
        se_channels=max(se_channels(m) for m in mids),
        out_channels=max(block.out_channels for _, block in variants),
        stride=strides.pop(),
        kernel=max(kernels),
        has_expand=kind == "ir" and any(block.mid_channels != c for c, block in variants),
        has_se=any(block.se for _, block in variants),
    )


# --- elastic layers ----------------------------------------------------------------------------------


def _activate(x: torch.Tensor, name: str) -> torch.Tensor:
    if name == "relu":
        return F.relu(x)
    if name == "relu6":
        return F.relu6(x)
    if name == "hswish":
        return F.hardswish(x)
    raise ValueError(f"unknown activation {name!r}")


class _ElasticConvBN(nn.Module):
    """Convolution (no bias) and BatchNorm at their largest; run on the first channels.

    BatchNorm uses the running statistics of the leading slice and, in training mode, updates
    that slice only (what OFA's dynamic BatchNorm does).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        *,
        depthwise: bool = False,
        kernels: tuple[int, ...] = (),
        kernel_transform: bool = False,
    ) -> None:
        super().__init__()
        groups = out_channels if depthwise else 1
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.depthwise = depthwise
        # Smaller kernels, largest first: each is the centre of the one before it.
        self.smaller = tuple(sorted((k for k in set(kernels) if k < kernel), reverse=True))
        self.transforms = nn.ParameterDict()
        if kernel_transform:
            for k in self.smaller:
                self.transforms[f"k{k}"] = nn.Parameter(torch.eye(k * k))

    def weight(self, out_channels: int, in_channels: int, kernel: int) -> torch.Tensor:
        if self.depthwise:
            return self._depthwise_weight(out_channels, kernel)
        return self.conv.weight[:out_channels, :in_channels]

    def _depthwise_weight(self, channels: int, kernel: int) -> torch.Tensor:
        weight = self.conv.weight[:channels]
        largest = weight.shape[-1]
        if kernel == largest:
            return weight
        if kernel not in self.smaller:
            raise ValueError(f"kernel {kernel} is not a choice of this layer ({largest}, {self.smaller})")
        if not self.transforms:
            start = (largest - kernel) // 2
            return weight[:, :, start : start + kernel, start : start + kernel]
        for k in self.smaller:  # OFA: centre of the previous kernel through a k^2 x k^2 map shared by channels
            start = (weight.shape[-1] - k) // 2
            centre = weight[:, :, start : start + k, start : start + k].reshape(channels, k * k)
            weight = (centre @ self.transforms[f"k{k}"]).reshape(channels, 1, k, k)
            if k == kernel:
                break
        return weight

    def forward(self, x: torch.Tensor, out_channels: int, kernel: int) -> torch.Tensor:
        in_channels = x.shape[1]
        weight = self.weight(out_channels, in_channels, kernel)
        groups = out_channels if self.depthwise else 1
        # With 'same' padding, taps more than size-1 pixels off centre only ever see padding: the
        # centred (2*size-1) kernel gives the same output. torch's CPU depthwise convolution is
        # 100x slower when the padding exceeds the map (a 7x7 on the 1x1 maps of a 32 px input).
        reach = 2 * max(x.shape[-2:]) - 1
        if kernel > reach:
            start = (kernel - reach) // 2
            weight = weight[:, :, start : start + reach, start : start + reach]
            kernel = reach
        y = F.conv2d(x, weight, None, self.conv.stride, kernel // 2, 1, groups)
        bn = self.bn
        return F.batch_norm(
            y,
            bn.running_mean[:out_channels],
            bn.running_var[:out_channels],
            bn.weight[:out_channels],
            bn.bias[:out_channels],
            bn.training,
            bn.momentum if bn.momentum is not None else 0.1,
            bn.eps,
        )


class _ElasticSqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        squeezed = se_channels(channels)
        pooled = x.mean(dim=(2, 3), keepdim=True)
        hidden = F.relu(F.conv2d(pooled, self.reduce.weight[:squeezed, :channels], self.reduce.bias[:squeezed]))
        scale = F.hardsigmoid(F.conv2d(hidden, self.expand.weight[:channels, :squeezed], self.expand.bias[:channels]))
        return x * scale


class _ElasticBlock(nn.Module):
    """An inverted residual (searched slots, 'ir' fixed blocks) or a depthwise-separable block ('ds')."""

    def __init__(self, layout: _BlockLayout, kernels: tuple[int, ...], kernel_transform: bool) -> None:
        super().__init__()
        self.kind = layout.kind
        mid = layout.mid_channels if layout.kind == "ir" else layout.in_channels
        self.expand = _ElasticConvBN(layout.in_channels, mid, 1, 1) if layout.has_expand else None
        self.depthwise = _ElasticConvBN(
            mid,
            mid,
            layout.kernel,
            layout.stride,
            depthwise=True,
            kernels=kernels if layout.kind == "ir" else (),
            kernel_transform=kernel_transform,
        )
        self.se = _ElasticSqueezeExcite(mid, layout.se_channels) if layout.has_se else None
        self.project = _ElasticConvBN(mid, layout.out_channels, 1, 1)

    def forward(self, x: torch.Tensor, block: BlockSpec) -> torch.Tensor:
        in_channels = x.shape[1]
        if self.kind == "ds":
            out = _activate(self.depthwise(x, in_channels, block.kernel), block.activation)
            return _activate(self.project(out, block.out_channels, 1), block.activation)
        mid = block.mid_channels
        out = x
        if mid != in_channels:
            assert self.expand is not None
            out = _activate(self.expand(x, mid, 1), block.activation)
        out = _activate(self.depthwise(out, mid, block.kernel), block.activation)
        if block.se:
            assert self.se is not None
            out = self.se(out)
        out = self.project(out, block.out_channels, 1)
        return out + x if block.has_residual(in_channels) else out


class _ElasticHead(nn.Module):
    def __init__(self, layout: _Layout, last_channels: int) -> None:
        super().__init__()
        channels = last_channels
        self.conv = None
        if layout.head_conv:
            self.conv = _ElasticConvBN(channels, layout.head_conv, 1, 1)
            channels = layout.head_conv
        self.hidden = None
        if layout.head_hidden:
            self.hidden = nn.Linear(channels, layout.head_hidden)
            channels = layout.head_hidden
        self.classifier = nn.Linear(channels, layout.num_classes)

    def forward(self, x: torch.Tensor, head: HeadSpec, dropout: float) -> torch.Tensor:
        if self.conv is not None:
            x = _activate(self.conv(x, head.conv_channels, 1), head.activation)
        x = x.mean(dim=(2, 3))
        channels = x.shape[1]
        if self.hidden is not None:
            hidden = head.hidden_channels
            x = _activate(
                F.linear(x, self.hidden.weight[:hidden, :channels], self.hidden.bias[:hidden]), head.activation
            )
            channels = hidden
        x = F.dropout(x, dropout, self.training)
        return F.linear(x, self.classifier.weight[:, :channels], self.classifier.bias)


# --- the supernet -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ActivePlan:
    spec: ArchSpec
    genome: np.ndarray
    blocks: tuple[tuple[_ElasticBlock, BlockSpec], ...]


class SuperNet(nn.Module):
    """Every member of `space` in one module. `set_active(arch)`, then call it like a network.

    `kernel_transform`: a smaller depthwise kernel is the centre of the next larger one through a
    learned k^2 x k^2 matrix per layer (Once-for-All), instead of the plain centre crop.
    """

    def __init__(self, space: SearchSpace, *, kernel_transform: bool = False) -> None:
        super().__init__()
        try:
            layout = _layout(space)
        except ValueError as error:
            raise UnsupportedSpaceError(f"space {space.name} cannot share weights: {error}") from error
        self.space = space
        self.kernel_transform = kernel_transform
        self.stem = _ElasticConvBN(3, layout.stem_channels, layout.stem_kernel, layout.stem_stride)
        self.fixed = nn.ModuleList(_ElasticBlock(b, (), False) for b in layout.fixed)
        self.slots = nn.ModuleList(_ElasticBlock(b, space.kernels, kernel_transform) for b in layout.slots)
        last = layout.slots[-1].out_channels if layout.slots else layout.fixed[-1].out_channels
        self.head = _ElasticHead(layout, last)
        _init_weights(self)
        self._active: _ActivePlan | None = None

    # --- choosing a member ---------------------------------------------------------------------------

    def set_active(self, arch: Architecture) -> ArchSpec:
        """Make `arch` (spec or genome) the member that `forward` runs; returns its spec.

        ValueError when the space cannot express it (wrong stem/head/widths, a block that is not a
        choice, a depth that is not allowed, or input channels other than 3).
        """
        self._active = self._plan(arch)
        return self._active.spec

    @property
    def active_spec(self) -> ArchSpec | None:
        return None if self._active is None else self._active.spec

    def genome_of(self, arch: Architecture) -> np.ndarray:
        return self._plan(arch).genome

    def largest_genome(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """Widest, deepest, largest kernel and expansion, SE on where allowed; activations drawn from
        `rng` (the first activation without one)."""
        return self._extreme_genome(max, rng)

    def smallest_genome(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """Narrowest, shallowest, smallest kernel and expansion, SE off where allowed."""
        return self._extreme_genome(min, rng)

    def _extreme_genome(self, pick: Callable[[list], object], rng: np.random.Generator | None) -> np.ndarray:
        space = self.space
        index = lambda values: values.index(pick(values))  # noqa: E731
        genes = np.full(space.genome_length, -1, dtype=np.int64)
        genes[0] = index(space.resolutions)
        genes[1] = index(space.widths)
        se = index([int(option) for option in space.se_options])
        for stage_i, stage in enumerate(space.stages):
            genes[2 + stage_i] = index(stage.depths)
            for j in range(pick(stage.depths)):
                base = space.slot_gene_index(space.stage_slot_offsets[stage_i] + j)
                act = 0 if rng is None else int(rng.integers(len(space.activations)))
                genes[base : base + 4] = (index(space.kernels), index(space.expansions), se, act)
        return genes

    def _plan(self, arch: Architecture) -> _ActivePlan:
        space = self.space
        if isinstance(arch, ArchSpec):
            spec = arch
            try:
                genome = space.encode(
                    arch if arch.resolution in space.resolutions else arch.with_resolution(space.resolutions[0])
                )
            except ValueError as error:
                raise ValueError(f"the supernet of space {space.name} cannot run this architecture: {error}") from error
        else:
            genome = np.asarray(arch, dtype=np.int64)
            spec = space.decode(genome)  # ValueError on a malformed genome
        modules = list(self.fixed)
        for stage_i, stage in enumerate(space.stages):
            depth = stage.depths[int(genome[2 + stage_i])]
            offset = space.stage_slot_offsets[stage_i]
            modules.extend(self.slots[offset + j] for j in range(depth))
        blocks = tuple(zip(modules, spec.blocks, strict=True))
        return _ActivePlan(spec=spec, genome=genome, blocks=blocks)

    # --- running it ----------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, dropout: float | None = None) -> torch.Tensor:
        """Logits of the active member. `dropout` before the classifier (training only): the space's
        rate by default; the sandwich rule regularises only the largest member."""
        if self._active is None:
            raise RuntimeError("no active sub-network: call set_active(spec or genome) first")
        spec = self._active.spec
        x = x.contiguous(memory_format=torch.channels_last)  # 2-4x faster depthwise convolutions on CPU
        x = _activate(self.stem(x, spec.stem.out_channels, spec.stem.kernel), spec.stem.activation)
        for module, block in self._active.blocks:
            x = module(x, block)
        return self.head(x, spec.head, self.space.dropout if dropout is None else dropout)

    @torch.no_grad()
    def calibrate(self, images: torch.Tensor) -> None:
        """Set the active member's BatchNorm running statistics to those of `images` (one batch).

        Only the member's leading slices change; evaluating in eval mode afterwards, or extracting,
        uses the member's own statistics. Equal to `recalibrate_batchnorm` with one full batch.
        """
        if len(images) < 2:
            raise ValueError("BatchNorm calibration needs at least 2 images")
        norms = [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]
        was_training = self.training
        momenta = [norm.momentum for norm in norms]
        try:
            for norm in norms:
                norm.momentum = 1.0  # running statistics := this batch's (variance unbiased)
            self.train()
            self(images, dropout=0.0)
        finally:
            for norm, momentum in zip(norms, momenta, strict=True):
                norm.momentum = momentum
            self.train(was_training)

    # --- copying a member out ------------------------------------------------------------------------

    @torch.no_grad()
    def extract(self, arch: Architecture) -> Network:
        """A plain `build_model` network with the member's weights and BatchNorm statistics copied
        out of the supernet (calibrate first for statistics of its own). For a spec, the network is
        built from that exact spec (its resolution kept); for a genome, from `space.decode`."""
        plan = self._plan(arch)
        network = build_model(plan.spec)
        spec = plan.spec
        _copy_conv_bn(network.stem, self.stem, spec.stem.out_channels, spec.in_channels, spec.stem.kernel)
        channels = spec.stem.out_channels
        for target, (module, block) in zip(network.blocks, plan.blocks, strict=True):
            _copy_block(target, module, block, channels)
            channels = block.out_channels
        head = spec.head
        if network.head.conv is not None:
            assert self.head.conv is not None
            _copy_conv_bn(network.head.conv, self.head.conv, head.conv_channels, channels, 1)
            channels = head.conv_channels
        if network.head.hidden is not None:
            assert self.head.hidden is not None
            network.head.hidden[0].weight.copy_(self.head.hidden.weight[: head.hidden_channels, :channels])
            network.head.hidden[0].bias.copy_(self.head.hidden.bias[: head.hidden_channels])
            channels = head.hidden_channels
        network.head.classifier.weight.copy_(self.head.classifier.weight[:, :channels])
        network.head.classifier.bias.copy_(self.head.classifier.bias)
        network.train(self.training)
        return network


def _copy_conv_bn(
    target: nn.Sequential, source: _ElasticConvBN, out_channels: int, in_channels: int, kernel: int
) -> None:
    target[0].weight.copy_(source.weight(out_channels, in_channels, kernel))
    bn, source_bn = target[1], source.bn
    bn.weight.copy_(source_bn.weight[:out_channels])
    bn.bias.copy_(source_bn.bias[:out_channels])
    bn.running_mean.copy_(source_bn.running_mean[:out_channels])
    bn.running_var.copy_(source_bn.running_var[:out_channels])
    bn.num_batches_tracked.copy_(source_bn.num_batches_tracked)


def _copy_block(target: nn.Module, source: _ElasticBlock, block: BlockSpec, in_channels: int) -> None:
    if isinstance(target, DepthwiseSeparable):
        _copy_conv_bn(target.depthwise, source.depthwise, in_channels, 1, block.kernel)
        _copy_conv_bn(target.pointwise, source.project, block.out_channels, in_channels, 1)
        return
    assert isinstance(target, InvertedResidual)
    mid = block.mid_channels
    if target.expand is not None:
        assert source.expand is not None
        _copy_conv_bn(target.expand, source.expand, mid, in_channels, 1)
    _copy_conv_bn(target.depthwise, source.depthwise, mid, 1, block.kernel)
    if target.se is not None:
        assert source.se is not None
        squeezed = se_channels(mid)
        target.se.reduce.weight.copy_(source.se.reduce.weight[:squeezed, :mid])
        target.se.reduce.bias.copy_(source.se.reduce.bias[:squeezed])
        target.se.expand.weight.copy_(source.se.expand.weight[:mid, :squeezed])
        target.se.expand.bias.copy_(source.se.expand.bias[:mid])
    _copy_conv_bn(target.project, source.project, block.out_channels, mid, 1)
