"""Reference networks: published sizes, channel rounding, monotonicity and argument checks."""

from __future__ import annotations

import itertools

import pytest

from search_spaces import REFERENCE_NETS, ArchSpec, count_spec, make_divisible, reference_names, reference_spec
from search_spaces.reference import RESOLUTION_RANGE, WIDTH_RANGE

WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.25, 1.3, 1.4)
RESOLUTIONS = (32, 96, 128, 160, 192, 224, 256, 320)
# The papers' figures (params, multiply-adds at 224 px, width 1.0), written out independently of the code.
PUBLISHED = {
    "mobilenet_v1": (4.2e6, 569e6),
    "mobilenet_v2": (3.4e6, 300e6),
    "mobilenet_v3_large": (5.4e6, 219e6),
    "mobilenet_v3_small": (2.5e6, 56e6),
}


def test_reference_names() -> None:
    assert reference_names() == list(PUBLISHED)
    assert set(REFERENCE_NETS) == set(PUBLISHED)


@pytest.mark.parametrize("name", reference_names())
def test_published_figures_are_recorded(name: str) -> None:
    net = REFERENCE_NETS[name]
    assert (net.published_params, net.published_madds) == PUBLISHED[name]
    assert net.name == name and net.paper


@pytest.mark.parametrize("name", reference_names())
def test_counts_within_five_percent_of_the_paper(name: str) -> None:
    net = REFERENCE_NETS[name]
    counts = count_spec(reference_spec(name, 1.0, 224))
    assert abs(counts.params / net.published_params - 1) <= 0.05, counts
    assert abs(counts.madds / net.published_madds - 1) <= 0.05, counts


@pytest.mark.parametrize("name", reference_names())
def test_width_one_reproduces_the_block_table(name: str) -> None:
    spec = reference_spec(name)
    assert tuple(block.to_string() for block in spec.blocks) == REFERENCE_NETS[name].blocks
    assert spec.stem == REFERENCE_NETS[name].stem
    assert (spec.resolution, spec.in_channels, spec.head.num_classes) == (224, 3, 1000)
    assert spec.layer_keys()[-1].height == 7  # every reference net downsamples by 32


@pytest.mark.parametrize("name", reference_names())
@pytest.mark.parametrize("width", WIDTHS)
def test_channels_are_multiples_of_eight(name: str, width: float) -> None:
    spec = reference_spec(name, width)
    channels = [spec.stem.out_channels]
    for block in spec.blocks:
        channels += [block.mid_channels, block.out_channels]
    channels += [c for c in (spec.head.conv_channels, spec.head.hidden_channels) if c]
    assert all(c % 8 == 0 and c >= 8 for c in channels), channels


@pytest.mark.parametrize("name", reference_names())
def test_channels_follow_the_multiplier(name: str) -> None:
    base = reference_spec(name, 1.0)
    for width in WIDTHS:
        spec = reference_spec(name, width)
        for block, base_block in zip(spec.blocks, base.blocks, strict=True):
            assert block.out_channels == make_divisible(base_block.out_channels * width)
            assert (block.kind, block.kernel, block.stride, block.se, block.activation) == (
                base_block.kind,
                base_block.kernel,
                base_block.stride,
                base_block.se,
                base_block.activation,
            )


def test_head_widths_follow_each_papers_rule() -> None:
    # MobileNetV2 keeps 1280 when narrower than 1.0 and widens it above.
    assert reference_spec("mobilenet_v2", 0.35).head.conv_channels == 1280
    assert reference_spec("mobilenet_v2", 1.0).head.conv_channels == 1280
    assert reference_spec("mobilenet_v2", 1.4).head.conv_channels == 1792
    # MobileNetV3's last 1x1 conv is six times the last block; its hidden layer follows the multiplier.
    for name, hidden in (("mobilenet_v3_large", 1280), ("mobilenet_v3_small", 1024)):
        for width in WIDTHS:
            spec = reference_spec(name, width)
            assert spec.head.conv_channels == 6 * spec.blocks[-1].out_channels
            assert spec.head.hidden_channels == make_divisible(hidden * width)
    v1 = reference_spec("mobilenet_v1").head
    assert (v1.conv_channels, v1.hidden_channels) == (0, 0)


@pytest.mark.parametrize("name", reference_names())
def test_counts_increase_with_width(name: str) -> None:
    counts = [count_spec(reference_spec(name, width)) for width in WIDTHS]
    for smaller, larger in itertools.pairwise(counts):
        assert larger.params > smaller.params
        assert larger.madds > smaller.madds


@pytest.mark.parametrize("name", reference_names())
def test_counts_increase_with_resolution(name: str) -> None:
    counts = [count_spec(reference_spec(name, 1.0, resolution)) for resolution in RESOLUTIONS]
    for smaller, larger in itertools.pairwise(counts):
        assert larger.madds > smaller.madds
        assert larger.params == smaller.params  # weights do not depend on the input size


def test_options_reach_the_spec() -> None:
    spec = reference_spec("mobilenet_v3_small", 0.75, 160, num_classes=10, in_channels=1)
    assert isinstance(spec, ArchSpec)
    assert (spec.resolution, spec.in_channels, spec.head.num_classes) == (160, 1, 10)
    assert spec.name == "mobilenet_v3_small_w0.75_r160"
    assert spec.layer_keys()[0].input_shape == (1, 1, 160, 160)


def test_range_limits_are_inclusive() -> None:
    assert WIDTH_RANGE == (0.35, 1.4) and RESOLUTION_RANGE == (16, 512)
    for name in reference_names():
        for width in WIDTH_RANGE:
            for resolution in RESOLUTION_RANGE:
                assert reference_spec(name, width, resolution).resolution == resolution


@pytest.mark.parametrize("width", [0.0, 0.25, 0.349, 1.41, 2.0, -1.0])
def test_width_out_of_range_raises(width: float) -> None:
    with pytest.raises(ValueError, match="width multiplier must be within 0.35-1.4"):
        reference_spec("mobilenet_v2", width)


@pytest.mark.parametrize("resolution", [0, 8, 15, 513, 1024])
def test_resolution_out_of_range_raises(resolution: int) -> None:
    with pytest.raises(ValueError, match="resolution must be within 16-512"):
        reference_spec("mobilenet_v3_large", 1.0, resolution)


@pytest.mark.parametrize("name", ["mobilenet_v4", "", "MobileNet_V2", "resnet50"])
def test_unknown_name_raises_key_error(name: str) -> None:
    with pytest.raises(KeyError, match="unknown reference network"):
        reference_spec(name)
