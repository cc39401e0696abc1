"""Reference networks: MobileNetV1, V2, V3-Large and V3-Small at any width multiplier and resolution.

Each network is data: its blocks at width 1.0 written as block strings (``ir_k5_s2_e72_c40_se_re``,
where ``e`` is the absolute expansion width at width 1.0). `reference_spec` scales every channel count
by the multiplier and rounds it to a multiple of 8 as the papers do.
"""

from __future__ import annotations

from dataclasses import dataclass

from search_spaces.arch_spec import ArchSpec, BlockSpec, HeadSpec, StemSpec, make_divisible

WIDTH_RANGE = (0.35, 1.4)
RESOLUTION_RANGE = (16, 512)


@dataclass(frozen=True)
class ReferenceNet:
    name: str
    paper: str
    stem: StemSpec
    blocks: tuple[str, ...]
    head: HeadSpec
    published_params: int
    published_madds: int
    # Which head widths follow the multiplier: V2 keeps 1280 when narrowing, V3 scales it.
    head_conv_min_is_base: bool = False


def _v1_blocks() -> tuple[str, ...]:
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    blocks, channels = [], 32
    for out, stride in plan:
        blocks.append(f"ds_k3_s{stride}_e{channels}_c{out}_r6")
        channels = out
    return tuple(blocks)


def _v2_blocks() -> tuple[str, ...]:
    # (expansion ratio t, channels c, repeats n, first stride s) from the MobileNetV2 paper, table 2.
    plan = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]
    blocks, channels = [], 32
    for ratio, out, repeats, stride in plan:
        for index in range(repeats):
            blocks.append(f"ir_k3_s{stride if index == 0 else 1}_e{channels * ratio}_c{out}_r6")
            channels = out
    return tuple(blocks)


REFERENCE_NETS: dict[str, ReferenceNet] = {
    "mobilenet_v1": ReferenceNet(
        name="mobilenet_v1",
        paper="MobileNets (Howard et al., 2017), table 1",
        stem=StemSpec(out_channels=32, activation="relu6"),
        blocks=_v1_blocks(),
        head=HeadSpec(num_classes=1000, activation="relu6", dropout=0.0),
        published_params=4_200_000,
        published_madds=569_000_000,
    ),
    "mobilenet_v2": ReferenceNet(
        name="mobilenet_v2",
        paper="MobileNetV2 (Sandler et al., 2018), table 2",
        stem=StemSpec(out_channels=32, activation="relu6"),
        blocks=_v2_blocks(),
        head=HeadSpec(conv_channels=1280, num_classes=1000, activation="relu6", dropout=0.2),
        published_params=3_400_000,
        published_madds=300_000_000,
        head_conv_min_is_base=True,
    ),
    "mobilenet_v3_large": ReferenceNet(
        name="mobilenet_v3_large",
        paper="Searching for MobileNetV3 (Howard et al., 2019), table 1",
        stem=StemSpec(out_channels=16, activation="hswish"),
        blocks=(
            "ir_k3_s1_e16_c16_re",
            "ir_k3_s2_e64_c24_re",
            "ir_k3_s1_e72_c24_re",
            "ir_k5_s2_e72_c40_se_re",
            "ir_k5_s1_e120_c40_se_re",
            "ir_k5_s1_e120_c40_se_re",
            "ir_k3_s2_e240_c80_hs",
            "ir_k3_s1_e200_c80_hs",
            "ir_k3_s1_e184_c80_hs",
            "ir_k3_s1_e184_c80_hs",
            "ir_k3_s1_e480_c112_se_hs",
            "ir_k3_s1_e672_c112_se_hs",
            "ir_k5_s2_e672_c160_se_hs",
            "ir_k5_s1_e960_c160_se_hs",
            "ir_k5_s1_e960_c160_se_hs",
        ),
        head=HeadSpec(conv_channels=960, hidden_channels=1280, num_classes=1000, activation="hswish"),
        published_params=5_400_000,
        published_madds=219_000_000,
    ),
    "mobilenet_v3_small": ReferenceNet(
        name="mobilenet_v3_small",
        paper="Searching for MobileNetV3 (Howard et al., 2019), table 2",
        stem=StemSpec(out_channels=16, activation="hswish"),
        blocks=(
            "ir_k3_s2_e16_c16_se_re",
            "ir_k3_s2_e72_c24_re",
            "ir_k3_s1_e88_c24_re",
            "ir_k5_s2_e96_c40_se_hs",
            "ir_k5_s1_e240_c40_se_hs",
            "ir_k5_s1_e240_c40_se_hs",
            "ir_k5_s1_e120_c48_se_hs",
            "ir_k5_s1_e144_c48_se_hs",
            "ir_k5_s2_e288_c96_se_hs",
            "ir_k5_s1_e576_c96_se_hs",
            "ir_k5_s1_e576_c96_se_hs",
        ),
        head=HeadSpec(conv_channels=576, hidden_channels=1024, num_classes=1000, activation="hswish"),
        published_params=2_500_000,
        published_madds=56_000_000,
    ),
}


def reference_names() -> list[str]:
    return list(REFERENCE_NETS)


def reference_spec(
    name: str, width: float = 1.0, resolution: int = 224, num_classes: int = 1000, in_channels: int = 3
) -> ArchSpec:
    """A reference network at a width multiplier and input resolution."""
    if name not in REFERENCE_NETS:
        raise KeyError(f"unknown reference network {name!r}; known: {', '.join(REFERENCE_NETS)}")
    low, high = WIDTH_RANGE
    if not low <= width <= high:
        raise ValueError(f"width multiplier must be within {low}-{high}, got {width}")
    r_low, r_high = RESOLUTION_RANGE
    if not r_low <= resolution <= r_high:
        raise ValueError(f"resolution must be within {r_low}-{r_high}, got {resolution}")
    net = REFERENCE_NETS[name]

    def scale(channels: int) -> int:
        return make_divisible(channels * width, 8)

    stem = net.stem.model_copy(update={"out_channels": scale(net.stem.out_channels)})
    blocks = []
    channels = stem.out_channels
    for text in net.blocks:
        base = BlockSpec.from_string(text)
        mid = channels if base.kind == "ds" else scale(base.mid_channels)
        block = base.model_copy(update={"mid_channels": mid, "out_channels": scale(base.out_channels)})
        blocks.append(block)
        channels = block.out_channels
    head = net.head
    updates: dict[str, int] = {"num_classes": num_classes}
    if head.conv_channels:
        conv = head.conv_channels
        updates["conv_channels"] = (
            make_divisible(conv * max(1.0, width), 8) if net.head_conv_min_is_base else (6 * channels)
        )
    if head.hidden_channels:
        updates["hidden_channels"] = scale(head.hidden_channels)
    label = f"{name}_w{width:g}_r{resolution}"
    return ArchSpec(
        resolution=resolution,
        in_channels=in_channels,
        stem=stem,
        blocks=tuple(blocks),
        head=head.model_copy(update=updates),
        name=label,
    )
