"""Search spaces over MobileNetV3's macro skeleton.

A space fixes the stem, the stages (output width, stride, allowed depths) and the head, and lets
every block choose its kernel, expansion ratio, squeeze-and-excite and activation; the whole network
also chooses a width multiplier and an input resolution.

An architecture of the space is encoded as a fixed-length integer vector (the *genome*):

    [resolution index, width index, depth index per stage, then per block slot: kernel index,
     expansion index, SE flag, activation index]

Slots beyond a stage's chosen depth hold -1, so equal networks have equal vectors. Strategies work
on genomes (sample / mutate / cross over); `decode` turns one into an `ArchSpec` with absolute
channels. The latency predictor prices a whole population of genomes at once from the same layout.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from search_spaces.arch_spec import (
    Activation,
    ArchSpec,
    BlockSpec,
    HeadSpec,
    StemSpec,
    conv_output_size,
    make_divisible,
)

UNUSED = -1
GENES_PER_SLOT = 4


@dataclass(frozen=True)
class StageChoices:
    """One stage: its output width at multiplier 1.0, the stride of its first block, allowed depths."""

    out_channels: int
    stride: int
    depths: tuple[int, ...]

    @property
    def max_depth(self) -> int:
        return max(self.depths)


@dataclass(frozen=True)
class SlotShape:
    """Where a block slot sits at one (resolution, width): its input and output geometry."""

    size: int
    in_channels: int
    out_channels: int
    stride: int


@dataclass(frozen=True)
class SearchSpace:
    name: str
    description: str
    stem_channels: int
    stages: tuple[StageChoices, ...]
    head_hidden_channels: int
    fixed_blocks: tuple[str, ...] = ()
    head_conv_ratio: int = 6
    kernels: tuple[int, ...] = (3, 5, 7)
    expansions: tuple[int, ...] = (3, 4, 6)
    se_options: tuple[bool, ...] = (False, True)
    activations: tuple[Activation, ...] = ("relu", "hswish")
    widths: tuple[float, ...] = (0.75, 1.0, 1.25)
    resolutions: tuple[int, ...] = (160, 192, 224)
    num_classes: int = 1000
    dropout: float = 0.2
    stem_activation: Activation = "hswish"

    def __post_init__(self) -> None:
        self._check_stage_widths()

    def _check_stage_widths(self) -> None:
        # A stride-1 stage as wide as the stage before it could not be told apart from that stage's
        # later blocks: two genomes would decode to one network and `encode` would fail.
        for width in self.widths:
            for index in range(1, len(self.stages)):
                stage, previous = self.stages[index], self.stages[index - 1]
                if stage.stride == 1 and self._scale(stage.out_channels, width) == self._scale(
                    previous.out_channels, width
                ):
                    raise ValueError(
                        f"at width {width:g}, stride-1 stage {index} is as wide as stage {index - 1} "
                        f"({self._scale(stage.out_channels, width)} channels); stages must differ"
                    )

    # --- layout ----------------------------------------------------------------------------------

    @property
    def n_options(self) -> int:
        """Distinct per-block choices (kernel x expansion x SE x activation)."""
        return len(self.kernels) * len(self.expansions) * len(self.se_options) * len(self.activations)

    @cached_property
    def stage_slot_offsets(self) -> tuple[int, ...]:
        offsets, total = [], 0
        for stage in self.stages:
            offsets.append(total)
            total += stage.max_depth
        return tuple(offsets)

    @property
    def n_slots(self) -> int:
        return sum(stage.max_depth for stage in self.stages)

    @property
    def genome_length(self) -> int:
        return 2 + len(self.stages) + GENES_PER_SLOT * self.n_slots

    def slot_gene_index(self, slot: int) -> int:
        return 2 + len(self.stages) + GENES_PER_SLOT * slot

    def option_index(self, kernel_i: int, expansion_i: int, se_i: int, act_i: int) -> int:
        return ((kernel_i * len(self.expansions) + expansion_i) * len(self.se_options) + se_i) * len(
            self.activations
        ) + act_i

    def with_options(
        self,
        *,
        resolutions: Iterable[int] | None = None,
        widths: Iterable[float] | None = None,
        num_classes: int | None = None,
    ) -> SearchSpace:
        """The same space at other resolutions, widths or class count (e.g. 32 px for a small dataset)."""
        changes: dict = {}
        if resolutions is not None:
            values = tuple(int(r) for r in resolutions)
            if not values or any(r < 16 or r > 1024 for r in values):
                raise ValueError(f"resolutions must be within 16-1024, got {values}")
            changes["resolutions"] = values
        if widths is not None:
            values_w = tuple(float(w) for w in widths)
            if not values_w or any(w < 0.25 or w > 2.0 for w in values_w):
                raise ValueError(f"width multipliers must be within 0.25-2.0, got {values_w}")
            changes["widths"] = values_w
        if num_classes is not None:
            if num_classes < 2:
                raise ValueError(f"num_classes must be at least 2, got {num_classes}")
            changes["num_classes"] = int(num_classes)
        space = replace(self, **changes)
        space._check_stage_widths()
        return space

    # --- geometry --------------------------------------------------------------------------------

    def _scale(self, channels: int, width: float) -> int:
        return make_divisible(channels * width, 8)

    def stem_spec(self, width: float) -> StemSpec:
        return StemSpec(out_channels=self._scale(self.stem_channels, width), activation=self.stem_activation)

    def fixed_block_specs(self, width: float) -> list[BlockSpec]:
        blocks, channels = [], self._scale(self.stem_channels, width)
        for text in self.fixed_blocks:
            base = BlockSpec.from_string(text)
            mid = channels if base.kind == "ds" else self._scale(base.mid_channels, width)
            block = base.model_copy(update={"mid_channels": mid, "out_channels": self._scale(base.out_channels, width)})
            blocks.append(block)
            channels = block.out_channels
        return blocks

    def head_spec(self, width: float) -> HeadSpec:
        last = self._scale(self.stages[-1].out_channels, width)
        return HeadSpec(
            conv_channels=self.head_conv_ratio * last,
            hidden_channels=self._scale(self.head_hidden_channels, width),
            num_classes=self.num_classes,
            activation="hswish",
            dropout=self.dropout,
        )

    def slot_shapes(self, resolution: int, width: float) -> list[tuple[SlotShape, SlotShape]]:
        """Per stage: the geometry of its first block and of every later block."""
        stem = self.stem_spec(width)
        size = conv_output_size(resolution, stem.kernel, stem.stride)
        channels = stem.out_channels
        for block in self.fixed_block_specs(width):
            size = conv_output_size(size, block.kernel, block.stride)
            channels = block.out_channels
        shapes = []
        for stage in self.stages:
            out = self._scale(stage.out_channels, width)
            first = SlotShape(size=size, in_channels=channels, out_channels=out, stride=stage.stride)
            # Every kernel size pads 'same', so the output size does not depend on the kernel choice.
            size = conv_output_size(size, 3, stage.stride)
            later = SlotShape(size=size, in_channels=out, out_channels=out, stride=1)
            shapes.append((first, later))
            channels = out
        return shapes

    def slot_block(self, shape: SlotShape, option: int) -> BlockSpec:
        n_e, n_s, n_a = len(self.expansions), len(self.se_options), len(self.activations)
        act_i = option % n_a
        se_i = (option // n_a) % n_s
        expansion_i = (option // (n_a * n_s)) % n_e
        kernel_i = option // (n_a * n_s * n_e)
        return BlockSpec(
            kind="ir",
            kernel=self.kernels[kernel_i],
            stride=shape.stride,
            mid_channels=make_divisible(shape.in_channels * self.expansions[expansion_i], 8),
            out_channels=shape.out_channels,
            se=self.se_options[se_i],
            activation=self.activations[act_i],
        )

    # --- genomes ---------------------------------------------------------------------------------

    def decode(self, genome: np.ndarray | Iterable[int]) -> ArchSpec:
        genes = np.asarray(list(genome) if not isinstance(genome, np.ndarray) else genome, dtype=np.int64)
        self._check_genome(genes)
        resolution = self.resolutions[int(genes[0])]
        width = self.widths[int(genes[1])]
        blocks = self.fixed_block_specs(width)
        for stage_i, (stage, (first, later)) in enumerate(
            zip(self.stages, self.slot_shapes(resolution, width), strict=True)
        ):
            depth = stage.depths[int(genes[2 + stage_i])]
            for j in range(depth):
                base = self.slot_gene_index(self.stage_slot_offsets[stage_i] + j)
                k, e, s, a = (int(g) for g in genes[base : base + GENES_PER_SLOT])
                blocks.append(self.slot_block(first if j == 0 else later, self.option_index(k, e, s, a)))
        return ArchSpec(
            resolution=resolution,
            stem=self.stem_spec(width),
            blocks=tuple(blocks),
            head=self.head_spec(width),
        )

    def _check_genome(self, genes: np.ndarray) -> None:
        if genes.shape != (self.genome_length,):
            raise ValueError(f"genome must have {self.genome_length} genes, got shape {genes.shape}")
        limits = [len(self.resolutions), len(self.widths)] + [len(s.depths) for s in self.stages]
        for index, limit in enumerate(limits):
            if not 0 <= genes[index] < limit:
                raise ValueError(f"gene {index} out of range 0..{limit - 1}: {genes[index]}")
        slot_limits = (len(self.kernels), len(self.expansions), len(self.se_options), len(self.activations))
        for stage_i, stage in enumerate(self.stages):
            depth = stage.depths[int(genes[2 + stage_i])]
            for j in range(stage.max_depth):
                base = self.slot_gene_index(self.stage_slot_offsets[stage_i] + j)
                for offset, limit in enumerate(slot_limits):
                    value = genes[base + offset]
                    valid = 0 <= value < limit if j < depth else value == UNUSED
                    if not valid:
                        raise ValueError(f"gene {base + offset} (stage {stage_i}, block {j}) invalid: {value}")

    def encode(self, spec: ArchSpec) -> np.ndarray:
        """The genome of `spec`; ValueError if the network is not a member of this space."""
        problems = []
        for r_i, resolution in enumerate(self.resolutions):
            if resolution != spec.resolution:
                continue
            for w_i, width in enumerate(self.widths):
                try:
                    return self._encode_at(spec, r_i, w_i)
                except ValueError as error:
                    problems.append(f"width {width}: {error}")
        detail = "; ".join(problems) if problems else f"resolution {spec.resolution} not in {self.resolutions}"
        raise ValueError(f"architecture is not in space {self.name}: {detail}")

    def _encode_at(self, spec: ArchSpec, r_i: int, w_i: int) -> np.ndarray:
        width = self.widths[w_i]
        if spec.in_channels != 3:  # members are RGB networks, as `decode` and `layer_keys_at` build them
            raise ValueError(f"input has {spec.in_channels} channels, members have 3")
        if spec.stem != self.stem_spec(width) or spec.head != self.head_spec(width):
            raise ValueError("stem or head differ")
        fixed = self.fixed_block_specs(width)
        if list(spec.blocks[: len(fixed)]) != fixed:
            raise ValueError("fixed blocks differ")
        genes = np.full(self.genome_length, UNUSED, dtype=np.int64)
        genes[0], genes[1] = r_i, w_i
        position = len(fixed)
        shapes = self.slot_shapes(self.resolutions[r_i], width)
        for stage_i, (stage, (first, later)) in enumerate(zip(self.stages, shapes, strict=True)):
            depth = 0
            while (
                position + depth < len(spec.blocks)
                and depth < stage.max_depth
                and spec.blocks[position + depth].out_channels == first.out_channels
                and (depth == 0 or spec.blocks[position + depth].stride == 1)
            ):
                depth += 1
            if depth not in stage.depths:
                raise ValueError(f"stage {stage_i} has depth {depth}, allowed {stage.depths}")
            genes[2 + stage_i] = stage.depths.index(depth)
            for j in range(depth):
                block = spec.blocks[position + j]
                option = self._match_option(block, first if j == 0 else later)
                base = self.slot_gene_index(self.stage_slot_offsets[stage_i] + j)
                genes[base : base + GENES_PER_SLOT] = option
            position += depth
        if position != len(spec.blocks):
            raise ValueError(f"{len(spec.blocks) - position} blocks left over after the last stage")
        return genes

    def _match_option(self, block: BlockSpec, shape: SlotShape) -> tuple[int, int, int, int]:
        for k_i in range(len(self.kernels)):
            for e_i in range(len(self.expansions)):
                for s_i in range(len(self.se_options)):
                    for a_i in range(len(self.activations)):
                        if self.slot_block(shape, self.option_index(k_i, e_i, s_i, a_i)) == block:
                            return (k_i, e_i, s_i, a_i)
        raise ValueError(f"block {block.to_string()} is not a choice of this space")

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return self.sample_population(1, rng)[0]

    def sample_population(
        self,
        n: int,
        rng: np.random.Generator,
        dtype: np.typing.DTypeLike = np.int64,
        lean: np.ndarray | None = None,
    ) -> np.ndarray:
        """`n` uniformly drawn genomes as an (n, genome_length) array (vectorised).

        Genes are small integers, so a large population can be held as int8 (an eighth of int64's
        memory; the latency pricer is then several times faster).

        `lean` (n shares in [0, 1]): genome i draws each choice Binomial(options - 1, lean[i]) instead of
        uniformly, i.e. it leans toward the first options (0: every choice the first) or the last (1).
        Spaces list options from cheapest to dearest, so leaning draws span small to large networks.
        """
        if lean is not None and (np.shape(lean) != (n,) or not np.all((0 <= lean) & (lean <= 1))):
            raise ValueError(f"lean must hold {n} shares within [0, 1]")

        def draw(limit: int) -> np.ndarray:
            return rng.integers(0, limit, n) if lean is None else rng.binomial(limit - 1, lean)

        genes = np.full((n, self.genome_length), UNUSED, dtype=dtype)
        genes[:, 0] = draw(len(self.resolutions))
        genes[:, 1] = draw(len(self.widths))
        limits = (len(self.kernels), len(self.expansions), len(self.se_options), len(self.activations))
        for stage_i, stage in enumerate(self.stages):
            depth_i = draw(len(stage.depths))
            genes[:, 2 + stage_i] = depth_i
            depth = np.asarray(stage.depths)[depth_i]
            for j in range(stage.max_depth):
                active = depth > j
                base = self.slot_gene_index(self.stage_slot_offsets[stage_i] + j)
                for offset, limit in enumerate(limits):
                    genes[:, base + offset] = np.where(active, draw(limit), UNUSED)
        return genes

    def mutate(self, genome: np.ndarray, rng: np.random.Generator, rate: float | None = None) -> np.ndarray:
        """A copy with each decision redrawn with probability `rate` (default: one per genome on average).

        Always returns a different architecture.
        """
        genes = np.asarray(genome, dtype=np.int64)
        decisions = 2 + len(self.stages) + self.n_slots
        rate = 1.0 / decisions if rate is None else rate
        while True:
            child = genes.copy()
            if rng.random() < rate:
                child[0] = rng.integers(0, len(self.resolutions))
            if rng.random() < rate:
                child[1] = rng.integers(0, len(self.widths))
            limits = (len(self.kernels), len(self.expansions), len(self.se_options), len(self.activations))
            for stage_i, stage in enumerate(self.stages):
                if rng.random() < rate:
                    child[2 + stage_i] = rng.integers(0, len(stage.depths))
                depth = stage.depths[int(child[2 + stage_i])]
                for j in range(stage.max_depth):
                    base = self.slot_gene_index(self.stage_slot_offsets[stage_i] + j)
                    if j >= depth:
                        child[base : base + GENES_PER_SLOT] = UNUSED
                    elif child[base] == UNUSED or rng.random() < rate:
                        child[base : base + GENES_PER_SLOT] = [rng.integers(0, limit) for limit in limits]
            if not np.array_equal(child, genes):
                return child

    def crossover(self, first: np.ndarray, second: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Stage-wise uniform crossover: resolution, width and each whole stage come from either parent."""
        a, b = np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)
        child = a.copy()
        for index in (0, 1):
            if rng.random() < 0.5:
                child[index] = b[index]
        for stage_i, stage in enumerate(self.stages):
            if rng.random() < 0.5:
                child[2 + stage_i] = b[2 + stage_i]
                start = self.slot_gene_index(self.stage_slot_offsets[stage_i])
                stop = start + GENES_PER_SLOT * stage.max_depth
                child[start:stop] = b[start:stop]
        return child

    # --- size and keys ---------------------------------------------------------------------------

    def size(self) -> int:
        """Number of distinct architectures in the space (an exact integer)."""
        total = len(self.resolutions) * len(self.widths)
        for stage in self.stages:
            total *= sum(self.n_options**depth for depth in stage.depths)
        return total

    def fixed_keys_at(self, resolution: int, width: float) -> list[str]:
        """Keys every architecture at this resolution and width contains: stem, fixed blocks, head."""
        stem = self.stem_spec(width)
        keys = [f"{stem.to_string()}@{resolution}x{resolution}x3"]
        size = conv_output_size(resolution, stem.kernel, stem.stride)
        channels = stem.out_channels
        for block in self.fixed_block_specs(width):
            keys.append(f"{block.to_string()}@{size}x{size}x{channels}")
            size = conv_output_size(size, block.kernel, block.stride)
            channels = block.out_channels
        last = self.slot_shapes(resolution, width)[-1][1]
        keys.append(f"{self.head_spec(width).to_string()}@{last.size}x{last.size}x{last.out_channels}")
        return keys

    def slot_keys_at(self, resolution: int, width: float) -> list[list[str]]:
        """For every block slot (in genome order), the key of each block option (in option order)."""
        per_slot = []
        for stage, (first, later) in zip(self.stages, self.slot_shapes(resolution, width), strict=True):
            for j in range(stage.max_depth):
                shape = first if j == 0 else later
                per_slot.append(
                    [
                        f"{self.slot_block(shape, option).to_string()}@{shape.size}x{shape.size}x{shape.in_channels}"
                        for option in range(self.n_options)
                    ]
                )
        return per_slot

    def layer_keys_at(self, resolution: int, width: float) -> list[str]:
        """Every distinct key at one resolution and width."""
        keys = dict.fromkeys(self.fixed_keys_at(resolution, width))
        for slot_keys in self.slot_keys_at(resolution, width):
            keys.update(dict.fromkeys(slot_keys))
        return list(keys)

    def block_keys(self) -> list[str]:
        """Every distinct layer key the space can produce, at its real input shape, sorted."""
        keys: set[str] = set()
        for resolution in self.resolutions:
            for width in self.widths:
                keys.update(self.layer_keys_at(resolution, width))
        return sorted(keys)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "stages": [
                {"out_channels": s.out_channels, "stride": s.stride, "depths": list(s.depths)} for s in self.stages
            ],
            "fixed_blocks": list(self.fixed_blocks),
            "kernels": list(self.kernels),
            "expansions": list(self.expansions),
            "se": list(self.se_options),
            "activations": list(self.activations),
            "widths": list(self.widths),
            "resolutions": list(self.resolutions),
            "num_classes": self.num_classes,
            "genome_length": self.genome_length,
            "num_architectures": self.size(),
            "num_block_keys": len(self.block_keys()),
        }


SPACES: dict[str, SearchSpace] = {
    "mobilenet_v3_large": SearchSpace(
        name="mobilenet_v3_large",
        description="MobileNetV3-Large skeleton: stem 16 h-swish, fixed first block, five searchable stages, "
        "efficient last stage (1x1 conv, pool, 1280 hidden).",
        stem_channels=16,
        fixed_blocks=("ir_k3_s1_e16_c16_re",),
        stages=(
            StageChoices(24, 2, (2, 3, 4)),
            StageChoices(40, 2, (2, 3, 4)),
            StageChoices(80, 2, (2, 3, 4)),
            StageChoices(112, 1, (2, 3, 4)),
            StageChoices(160, 2, (2, 3, 4)),
        ),
        head_hidden_channels=1280,
    ),
    "mobilenet_v3_small": SearchSpace(
        name="mobilenet_v3_small",
        description="MobileNetV3-Small skeleton: stem 16 h-swish, five searchable stages, "
        "efficient last stage (1x1 conv, pool, 1024 hidden).",
        stem_channels=16,
        stages=(
            StageChoices(16, 2, (1,)),
            StageChoices(24, 2, (1, 2)),
            StageChoices(40, 2, (2, 3, 4)),
            StageChoices(48, 1, (1, 2, 3)),
            StageChoices(96, 2, (2, 3, 4)),
        ),
        head_hidden_channels=1024,
    ),
}


def tiny_space(name: str = "tiny", resolution: int = 32, num_classes: int = 10, description: str = "") -> SearchSpace:
    """A toy space for tests, benchmarks and smoke runs of the machinery (not for real searches): two
    stages of 1-2 blocks, kernels 3/5, expansions 3/6, SE on/off, ReLU, one width. Its ~34 block keys
    profile in about a second and its networks train in seconds at 16-32 px."""
    return SearchSpace(
        name=name,
        description=description or "tiny two-stage space for tests and benchmarks",
        stem_channels=8,
        stages=(StageChoices(16, 2, (1, 2)), StageChoices(24, 2, (1, 2))),
        head_hidden_channels=32,
        kernels=(3, 5),
        expansions=(3, 6),
        se_options=(False, True),
        activations=("relu",),
        widths=(1.0,),
        resolutions=(resolution,),
        num_classes=num_classes,
    )


def get_space(name: str) -> SearchSpace:
    if name not in SPACES:
        raise KeyError(f"unknown search space {name!r}; known: {', '.join(SPACES)}")
    return SPACES[name]
