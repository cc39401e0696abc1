"""Architectures as data.

An `ArchSpec` is a whole network: input resolution, stem, an ordered list of blocks and a head, all
with absolute channel counts so that a pruning step (NetAdapt) can change a single layer. Every
block has one canonical short string (in the spirit of timm's ``ir_r2_k5_s2_e6_c40_se0.25_nre``);
the same string, prefixed by the block's input shape, is the latency lookup-table key.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Activation = Literal["relu", "relu6", "hswish"]
BlockKind = Literal["ds", "ir"]

ACTIVATION_CODES: dict[str, str] = {"relu": "re", "relu6": "r6", "hswish": "hs"}
CODE_ACTIVATIONS: dict[str, str] = {code: name for name, code in ACTIVATION_CODES.items()}


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of `divisor` the way the MobileNet papers do.

    Rounds to the nearest multiple but never drops more than 10% below `value`.
    """
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def conv_output_size(size: int, kernel: int, stride: int) -> int:
    """Spatial size after a 'same'-padded convolution (padding = kernel // 2)."""
    padding = kernel // 2
    return (size + 2 * padding - kernel) // stride + 1


def se_channels(mid_channels: int) -> int:
    """Squeeze width of a MobileNetV3 squeeze-and-excite module (a quarter, rounded to 8)."""
    return make_divisible(mid_channels // 4, 8)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StemSpec(_Frozen):
    """The first full convolution."""

    out_channels: int = Field(ge=1, le=4096)
    kernel: int = Field(default=3, ge=1, le=11)
    stride: int = Field(default=2, ge=1, le=4)
    activation: Activation = "hswish"

    def to_string(self) -> str:
        return f"stem_k{self.kernel}_s{self.stride}_c{self.out_channels}_{ACTIVATION_CODES[self.activation]}"


class BlockSpec(_Frozen):
    """One block.

    ``ds``: depthwise-separable (MobileNetV1): depthwise kxk + BN + act, pointwise + BN + act.
    ``ir``: inverted residual with linear bottleneck (MobileNetV2/V3): optional 1x1 expansion to
    `mid_channels` (skipped when it equals the input width), depthwise kxk, optional squeeze-and-excite,
    linear 1x1 projection; a residual connection when stride is 1 and widths match.
    For ``ds`` blocks `mid_channels` is the input width.
    """

    kind: BlockKind
    kernel: int = Field(ge=1, le=11)
    stride: int = Field(ge=1, le=2)
    mid_channels: int = Field(ge=1, le=8192)
    out_channels: int = Field(ge=1, le=8192)
    se: bool = False
    activation: Activation = "relu"

    @model_validator(mode="after")
    def _odd_kernel(self) -> BlockSpec:
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd, got {self.kernel}")
        if self.kind == "ds" and self.se:
            raise ValueError("depthwise-separable (ds) blocks have no squeeze-and-excite")
        return self

    def to_string(self) -> str:
        se = "_se" if self.se else ""
        return (
            f"{self.kind}_k{self.kernel}_s{self.stride}_e{self.mid_channels}_c{self.out_channels}"
            f"{se}_{ACTIVATION_CODES[self.activation]}"
        )

    @classmethod
    def from_string(cls, text: str) -> BlockSpec:
        match = _BLOCK_RE.fullmatch(text)
        if match is None:
            raise ValueError(f"not a block string: {text!r} (expected e.g. 'ir_k5_s2_e72_c40_se_hs')")
        return cls(
            kind=match["kind"],
            kernel=int(match["k"]),
            stride=int(match["s"]),
            mid_channels=int(match["e"]),
            out_channels=int(match["c"]),
            se=bool(match["se"]),
            activation=CODE_ACTIVATIONS[match["act"]],
        )

    def has_residual(self, in_channels: int) -> bool:
        return self.kind == "ir" and self.stride == 1 and in_channels == self.out_channels


class HeadSpec(_Frozen):
    """Everything after the last block.

    MobileNetV1: pool + classifier. V2: 1x1 conv (`conv_channels`) + pool + classifier. V3's efficient
    last stage: 1x1 conv + pool, then a 1x1 'hidden' layer without BatchNorm (`hidden_channels`) on the
    pooled vector, then the classifier.
    """

    conv_channels: int = Field(default=0, ge=0, le=8192)
    hidden_channels: int = Field(default=0, ge=0, le=8192)
    num_classes: int = Field(default=1000, ge=2, le=100_000)
    activation: Activation = "hswish"
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)

    def to_string(self) -> str:
        return (
            f"head_c{self.conv_channels}_h{self.hidden_channels}_n{self.num_classes}"
            f"_{ACTIVATION_CODES[self.activation]}"
        )


# Top-level keys a downloaded spec.json adds to the spec (see nas.preprocessing); `from_json` skips them.
DOWNLOAD_KEYS = ("preprocessing", "class_names")

_BLOCK_RE = re.compile(r"(?P<kind>ds|ir)_k(?P<k>\d+)_s(?P<s>\d+)_e(?P<e>\d+)_c(?P<c>\d+)(?P<se>_se)?_(?P<act>re|r6|hs)")
_KEY_RE = re.compile(r"(?P<body>[a-z0-9_]+)@(?P<h>\d+)x(?P<w>\d+)x(?P<c>\d+)")
_STEM_RE = re.compile(r"stem_k(?P<k>\d+)_s(?P<s>\d+)_c(?P<c>\d+)_(?P<act>re|r6|hs)")
_HEAD_RE = re.compile(r"head_c(?P<c>\d+)_h(?P<h>\d+)_n(?P<n>\d+)_(?P<act>re|r6|hs)")


@dataclass(frozen=True)
class LayerKey:
    """One layer (stem, block or head) in context: what it is and the input shape it sees.

    Its string form is the latency lookup-table key, e.g. ``ir_k5_s2_e72_c40_se_hs@56x56x24``.
    """

    layer: StemSpec | BlockSpec | HeadSpec
    height: int
    width: int
    in_channels: int

    def __str__(self) -> str:
        return f"{self.layer.to_string()}@{self.height}x{self.width}x{self.in_channels}"

    # A key is its string: fields the string leaves out (the head's dropout) must not make a parsed
    # key differ from the one it was written from.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, LayerKey) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """NCHW input shape with batch 1."""
        return (1, self.in_channels, self.height, self.width)

    @classmethod
    def parse(cls, key: str) -> LayerKey:
        match = _KEY_RE.fullmatch(key)
        if match is None:
            raise ValueError(f"not a layer key: {key!r} (expected e.g. 'ir_k5_s2_e72_c40_se_hs@56x56x24')")
        body = match["body"]
        layer: StemSpec | BlockSpec | HeadSpec
        if body.startswith("stem_"):
            stem = _STEM_RE.fullmatch(body)
            if stem is None:
                raise ValueError(f"not a stem key: {key!r}")
            layer = StemSpec(
                out_channels=int(stem["c"]),
                kernel=int(stem["k"]),
                stride=int(stem["s"]),
                activation=CODE_ACTIVATIONS[stem["act"]],
            )
        elif body.startswith("head_"):
            head = _HEAD_RE.fullmatch(body)
            if head is None:
                raise ValueError(f"not a head key: {key!r}")
            layer = HeadSpec(
                conv_channels=int(head["c"]),
                hidden_channels=int(head["h"]),
                num_classes=int(head["n"]),
                activation=CODE_ACTIVATIONS[head["act"]],
            )
        else:
            layer = BlockSpec.from_string(body)
        parsed = cls(layer=layer, height=int(match["h"]), width=int(match["w"]), in_channels=int(match["c"]))
        if isinstance(layer, BlockSpec) and layer.kind == "ds" and layer.mid_channels != parsed.in_channels:
            raise ValueError(f"ds block key {key!r}: expansion width must equal the input width")
        return parsed


class ArchSpec(_Frozen):
    """A whole network. Serialises to JSON, to a short readable string, and to a stable hash."""

    resolution: int = Field(ge=8, le=1024)
    in_channels: int = Field(default=3, ge=1, le=16)
    stem: StemSpec
    blocks: tuple[BlockSpec, ...] = Field(min_length=1, max_length=128)
    head: HeadSpec
    name: str | None = Field(default=None, max_length=200, description="free-form label; not hashed")

    @model_validator(mode="after")
    def _consistent_channels(self) -> ArchSpec:
        channels = self.stem.out_channels
        for index, block in enumerate(self.blocks):
            if block.kind == "ds" and block.mid_channels != channels:
                raise ValueError(
                    f"blocks[{index}]: ds block expansion width {block.mid_channels} must equal its input "
                    f"width {channels}"
                )
            channels = block.out_channels
        return self

    # --- shapes and keys -------------------------------------------------------------------------

    def layer_keys(self) -> list[LayerKey]:
        """Stem, every block and the head, each with the input shape it sees."""
        size = self.resolution
        keys = [LayerKey(self.stem, size, size, self.in_channels)]
        size = conv_output_size(size, self.stem.kernel, self.stem.stride)
        channels = self.stem.out_channels
        for block in self.blocks:
            keys.append(LayerKey(block, size, size, channels))
            size = conv_output_size(size, block.kernel, block.stride)
            channels = block.out_channels
        keys.append(LayerKey(self.head, size, size, channels))
        return keys

    def block_keys(self) -> list[str]:
        """The lookup-table keys of this network, in order (stem first, head last)."""
        return [str(key) for key in self.layer_keys()]

    def block_input_channels(self) -> list[int]:
        return [key.in_channels for key in self.layer_keys()[1:-1]]

    # --- serialisation ---------------------------------------------------------------------------

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> ArchSpec:
        """A spec from its JSON, or from a downloaded spec.json: that document also says how to feed the
        network and what its outputs mean (`DOWNLOAD_KEYS`), which describe the data, not the network."""
        try:
            document = json.loads(text)
        except ValueError:
            return cls.model_validate_json(text)  # pydantic's own message for malformed JSON
        if isinstance(document, dict):
            document = {key: value for key, value in document.items() if key not in DOWNLOAD_KEYS}
        return cls.model_validate(document)

    def to_string(self) -> str:
        """One readable line: resolution, stem, blocks, head."""
        parts = [f"r{self.resolution}", self.stem.to_string(), *(b.to_string() for b in self.blocks)]
        parts.append(self.head.to_string())
        return " ".join(parts)

    def content_hash(self) -> str:
        """Stable hash of everything that changes the network (the `name` label excluded)."""
        payload = self.model_dump(mode="json", exclude={"name"})
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:20]

    def with_resolution(self, resolution: int) -> ArchSpec:
        """The same network fed `resolution` px images: the layers and weights do not change (global
        pooling before the head), only the input size, the block keys and the latency do."""
        return self.model_copy(update={"resolution": int(resolution)})

    def with_num_classes(self, num_classes: int) -> ArchSpec:
        return self.model_copy(update={"head": self.head.model_copy(update={"num_classes": num_classes})})
