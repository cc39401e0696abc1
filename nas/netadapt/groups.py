"""Which channel counts NetAdapt may shrink, and which must shrink together.

A network's channel counts are named fields: ``stem.out``, ``blocks.3.mid``, ``blocks.3.out``,
``head.conv``, ``head.hidden``. Some fields are tied and form one `ChannelGroup`:

- a residual add needs both operands equally wide, so a chain of blocks joined by residual adds
  shares one width with the layer (stem or block) that starts the chain;
- a depthwise conv that runs directly on a block's input (every ``ds`` block, and ``ir`` blocks
  without an expansion conv) has the input's width, so that block's ``mid`` joins the input's group.

An ``ir`` block's expansion width (when it has an expansion conv) is a group of its own, as are the
head's conv and hidden widths. The image channels and the classifier's outputs are never pruned.
Shrinking never changes the layers themselves: a width that would remove an expansion conv
(mid == in) or add or remove a residual add is not a candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from search_spaces.arch_spec import ArchSpec

GroupKind = Literal["expansion", "output", "head_conv", "head_hidden"]
CHANNEL_MULTIPLE = 8


@dataclass(frozen=True)
class ChannelGroup:
    """Channel fields that share one width and change together."""

    kind: GroupKind
    fields: tuple[str, ...]
    width: int

    @property
    def name(self) -> str:
        return "+".join(self.fields)


def field_widths(spec: ArchSpec) -> dict[str, int]:
    """Every channel field of `spec` (zero-width head layers left out), in network order."""
    widths = {"stem.out": spec.stem.out_channels}
    for index, block in enumerate(spec.blocks):
        widths[f"blocks.{index}.mid"] = block.mid_channels
        widths[f"blocks.{index}.out"] = block.out_channels
    if spec.head.conv_channels:
        widths["head.conv"] = spec.head.conv_channels
    if spec.head.hidden_channels:
        widths["head.hidden"] = spec.head.hidden_channels
    return widths


def _input_field(index: int) -> str:
    return "stem.out" if index == 0 else f"blocks.{index - 1}.out"


def channel_groups(spec: ArchSpec) -> list[ChannelGroup]:
    """Every group of tied fields, whether or not it can shrink (`prune_model` needs them all)."""
    widths = field_widths(spec)
    parent = {field: field for field in widths}

    def root(field: str) -> str:
        while parent[field] != field:
            parent[field] = parent[parent[field]]
            field = parent[field]
        return field

    def tie(a: str, b: str) -> None:
        parent[root(b)] = root(a)

    channels = spec.stem.out_channels
    for index, block in enumerate(spec.blocks):
        source = _input_field(index)
        if block.kind == "ds" or block.mid_channels == channels:
            tie(source, f"blocks.{index}.mid")
        if block.has_residual(channels):
            tie(source, f"blocks.{index}.out")
        channels = block.out_channels
    members: dict[str, list[str]] = {}
    for field in widths:  # dicts keep network order, so fields and groups come out ordered
        members.setdefault(root(field), []).append(field)
    groups = []
    for fields in members.values():
        first = fields[0]
        if first == "head.conv":
            kind: GroupKind = "head_conv"
        elif first == "head.hidden":
            kind = "head_hidden"
        elif first.endswith(".mid"):
            kind = "expansion"
        else:
            kind = "output"
        groups.append(ChannelGroup(kind, tuple(fields), widths[first]))
    return groups


def _structure(spec_blocks: list[tuple[str, int, int, int, int]]) -> list[tuple[bool, bool]]:
    """Per block: (has an expansion conv, has a residual add), from (kind, stride, in, mid, out)."""
    return [
        (kind == "ir" and mid != c_in, kind == "ir" and stride == 1 and c_in == out)
        for kind, stride, c_in, mid, out in spec_blocks
    ]


def _blocks_with(spec: ArchSpec, widths: dict[str, int]) -> list[tuple[str, int, int, int, int]]:
    rows = []
    for index, block in enumerate(spec.blocks):
        c_in = widths[_input_field(index)]
        rows.append((block.kind, block.stride, c_in, widths[f"blocks.{index}.mid"], widths[f"blocks.{index}.out"]))
    return rows


def _keeps_structure(spec: ArchSpec, group: ChannelGroup, new_width: int) -> bool:
    widths = field_widths(spec)
    before = _structure(_blocks_with(spec, widths))
    widths.update(dict.fromkeys(group.fields, new_width))
    return _structure(_blocks_with(spec, widths)) == before


def candidate_widths(spec: ArchSpec, group: ChannelGroup) -> list[int]:
    """Widths the group may shrink to, widest first: multiples of 8, at least 8, below its width,
    and leaving every expansion conv and residual add in place."""
    top = (group.width - 1) // CHANNEL_MULTIPLE * CHANNEL_MULTIPLE
    return [
        width for width in range(top, CHANNEL_MULTIPLE - 1, -CHANNEL_MULTIPLE) if _keeps_structure(spec, group, width)
    ]


def prunable_groups(spec: ArchSpec) -> list[ChannelGroup]:
    """The groups that can shrink by at least one multiple of 8 without changing the layers."""
    return [group for group in channel_groups(spec) if candidate_widths(spec, group)]


def apply_widths(spec: ArchSpec, group: ChannelGroup, new_width: int) -> ArchSpec:
    """`spec` with every field of `group` set to `new_width` (validated again as a new ArchSpec)."""
    widths = field_widths(spec)
    stale = [field for field in group.fields if widths.get(field) != group.width]
    if stale:
        raise ValueError(
            f"group {group.name} does not match this spec (fields {', '.join(stale)} are not {group.width})"
        )
    if new_width % CHANNEL_MULTIPLE or not CHANNEL_MULTIPLE <= new_width <= group.width:
        raise ValueError(
            f"new width of {group.name} must be a multiple of {CHANNEL_MULTIPLE} within "
            f"{CHANNEL_MULTIPLE}..{group.width}, got {new_width}"
        )
    if not _keeps_structure(spec, group, new_width):
        raise ValueError(f"width {new_width} for {group.name} would add or remove an expansion conv or a residual add")
    widths.update(dict.fromkeys(group.fields, new_width))
    payload = spec.model_dump()
    payload["stem"]["out_channels"] = widths["stem.out"]
    for index, block in enumerate(payload["blocks"]):
        block["mid_channels"] = widths[f"blocks.{index}.mid"]
        block["out_channels"] = widths[f"blocks.{index}.out"]
    payload["head"]["conv_channels"] = widths.get("head.conv", 0)
    payload["head"]["hidden_channels"] = widths.get("head.hidden", 0)
    return ArchSpec.model_validate(payload)
