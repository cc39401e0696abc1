"""ArchSpec as data: serialisation round trips, block strings, layer keys, validation, content hash."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import search_spaces
from search_spaces import (
    SPACES,
    ArchSpec,
    BlockSpec,
    HeadSpec,
    LayerKey,
    StemSpec,
    make_divisible,
    reference_names,
    reference_spec,
)
from search_spaces.arch_spec import conv_output_size, se_channels

REPO_ROOT = Path(search_spaces.__file__).resolve().parent.parent


def _all_specs(tiny: ArchSpec) -> list[ArchSpec]:
    specs = [tiny, *(reference_spec(name) for name in reference_names())]
    rng = np.random.default_rng(0)
    specs += [space.decode(space.sample(rng)) for space in SPACES.values()]
    return specs


def _replace_block(spec: ArchSpec, index: int, **changes: object) -> ArchSpec:
    """A re-validated copy of `spec` with one block changed."""
    blocks = list(spec.blocks)
    blocks[index] = BlockSpec.model_validate({**blocks[index].model_dump(), **changes})
    return ArchSpec.model_validate({**spec.model_dump(), "blocks": [b.model_dump() for b in blocks]})


def _replace(spec: ArchSpec, **changes: object) -> ArchSpec:
    return ArchSpec.model_validate({**spec.model_dump(), **changes})


# --- JSON ------------------------------------------------------------------------------------------


def test_json_round_trip_is_equal(tiny_spec: ArchSpec) -> None:
    for spec in _all_specs(tiny_spec):
        text = spec.to_json()
        restored = ArchSpec.from_json(text)
        assert restored == spec
        assert restored.to_json() == text
        assert ArchSpec.from_json(text.encode()) == spec


def test_json_round_trip_keeps_the_name(tiny_spec: ArchSpec) -> None:
    assert ArchSpec.from_json(tiny_spec.to_json()).name == "tiny"
    assert ArchSpec.from_json(tiny_spec.model_copy(update={"name": None}).to_json()).name is None


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda d: d.update(extra=1), id="extra-field"),
        pytest.param(lambda d: d.pop("stem"), id="missing-stem"),
        pytest.param(lambda d: d.update(resolution=4), id="resolution-too-small"),
        pytest.param(lambda d: d["blocks"][0].update(activation="gelu"), id="unknown-activation"),
    ],
)
def test_from_json_rejects_invalid_documents(tiny_spec: ArchSpec, mutate) -> None:
    document = json.loads(tiny_spec.to_json())
    mutate(document)
    with pytest.raises(ValueError):
        ArchSpec.from_json(json.dumps(document))


# --- block strings ---------------------------------------------------------------------------------


def test_block_string_format_is_canonical() -> None:
    block = BlockSpec(kind="ir", kernel=5, stride=2, mid_channels=72, out_channels=40, se=True, activation="hswish")
    assert block.to_string() == "ir_k5_s2_e72_c40_se_hs"
    ds = BlockSpec(kind="ds", kernel=3, stride=1, mid_channels=32, out_channels=64, activation="relu6")
    assert ds.to_string() == "ds_k3_s1_e32_c64_r6"
    plain = BlockSpec(kind="ir", kernel=7, stride=1, mid_channels=96, out_channels=24, activation="relu")
    assert plain.to_string() == "ir_k7_s1_e96_c24_re"


BLOCK_CASES = [
    BlockSpec(kind=kind, kernel=kernel, stride=stride, mid_channels=mid, out_channels=40, se=se, activation=act)
    for kind, se, act, (kernel, stride), mid in itertools.product(
        ("ds", "ir"), (False, True), ("relu", "relu6", "hswish"), ((3, 1), (5, 2), (7, 1)), (24, 120)
    )
    if not (kind == "ds" and se)
]


@pytest.mark.parametrize("block", BLOCK_CASES, ids=lambda b: b.to_string())
def test_block_string_round_trip(block: BlockSpec) -> None:
    text = block.to_string()
    assert BlockSpec.from_string(text) == block
    assert BlockSpec.from_string(text).to_string() == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a block string"),
        ("ir_k3_s1_e16_c16", "not a block string"),  # no activation
        ("ir_k3_s1_e16_c16_sw", "not a block string"),  # unknown activation code
        ("xx_k3_s1_e16_c16_re", "not a block string"),  # unknown kind
        ("ir_k3_s1_e16_c16_re_extra", "not a block string"),  # trailing text
        ("IR_K3_S1_E16_C16_RE", "not a block string"),
        ("ir_k3_s1_e16_c16_re@8x8x16", "not a block string"),  # a layer key is not a block
        ("ir_k4_s1_e16_c16_re", "kernel must be odd"),
        ("ds_k3_s1_e16_c16_se_re", "squeeze-and-excite"),
        ("ir_k3_s3_e16_c16_re", "stride"),
        ("ir_k3_s1_e0_c16_re", "mid_channels"),
    ],
)
def test_invalid_block_strings_raise(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BlockSpec.from_string(text)


# --- layer keys ------------------------------------------------------------------------------------


def test_layer_key_format() -> None:
    keys = reference_spec("mobilenet_v3_large").block_keys()
    assert keys[0] == "stem_k3_s2_c16_hs@224x224x3"
    assert keys[1] == "ir_k3_s1_e16_c16_re@112x112x16"
    assert keys[4] == "ir_k5_s2_e72_c40_se_re@56x56x24"
    assert keys[-1] == "head_c960_h1280_n1000_hs@7x7x160"


@pytest.mark.parametrize("name", reference_names())
@pytest.mark.parametrize(("width", "resolution"), [(1.0, 224), (0.35, 96)])
def test_layer_key_parse_round_trip(name: str, width: float, resolution: int) -> None:
    keys = reference_spec(name, width, resolution).layer_keys()
    assert isinstance(keys[0].layer, StemSpec)
    assert isinstance(keys[-1].layer, HeadSpec)
    for key in keys:
        parsed = LayerKey.parse(str(key))
        assert parsed == key
        assert str(parsed) == str(key)
        assert parsed.input_shape == key.input_shape == (1, key.in_channels, key.height, key.width)
        assert type(parsed.layer) is type(key.layer)


def test_layer_key_round_trip_of_tiny_spec_and_space_members(tiny_spec: ArchSpec) -> None:
    for spec in _all_specs(tiny_spec):
        for text in spec.block_keys():
            assert str(LayerKey.parse(text)) == text


def test_parsed_head_key_keeps_every_field_in_the_key() -> None:
    key = LayerKey.parse("head_c576_h1024_n10_r6@7x7x96")
    assert key.layer == HeadSpec(conv_channels=576, hidden_channels=1024, num_classes=10, activation="relu6")
    assert (key.height, key.width, key.in_channels) == (7, 7, 96)
    stem = LayerKey.parse("stem_k5_s1_c24_re@33x31x1")
    assert stem.layer == StemSpec(out_channels=24, kernel=5, stride=1, activation="relu")
    assert stem.input_shape == (1, 1, 33, 31)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("ir_k3_s1_e16_c16_re", "not a layer key"),  # no input shape
        ("ir_k3_s1_e16_c16_re@8x8", "not a layer key"),
        ("ir_k3_s1_e16_c16_re@8x8x16x1", "not a layer key"),
        ("ir_k3_s1_e16_c16_re@axbxc", "not a layer key"),
        ("IR_k3_s1_e16_c16_re@8x8x16", "not a layer key"),
        ("stem_k3_c16_hs@32x32x3", "not a stem key"),
        ("stem_k3_s2_c16_xx@32x32x3", "not a stem key"),
        ("head_c0_n10_hs@1x1x8", "not a head key"),
        ("head_c0_h0_n10_hs_x@1x1x8", "not a head key"),
        ("ir_k3_s1_e16_c16@8x8x16", "not a block string"),
        ("ir_k2_s1_e16_c16_re@8x8x16", "kernel must be odd"),
        ("ds_k3_s1_e16_c32_re@8x8x8", "expansion width must equal the input width"),
        ("head_c0_h0_n1_hs@1x1x8", "num_classes"),
    ],
)
def test_invalid_layer_keys_raise(key: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LayerKey.parse(key)


def test_layer_keys_follow_the_geometry(tiny_spec: ArchSpec) -> None:
    spec = tiny_spec.model_copy(update={"resolution": 33})
    keys = spec.layer_keys()
    assert len(keys) == len(spec.blocks) + 2
    assert keys[0].input_shape == (1, 3, 33, 33)
    size = conv_output_size(33, 3, 2)
    assert size == 17
    channels = spec.stem.out_channels
    for key, block in zip(keys[1:-1], spec.blocks, strict=True):
        assert (key.height, key.width, key.in_channels) == (size, size, channels)
        size = conv_output_size(size, block.kernel, block.stride)
        channels = block.out_channels
    assert (keys[-1].height, keys[-1].in_channels) == (size, channels) == (3, 40)
    assert spec.block_input_channels() == [16, 16, 16, 24, 24, 32, 40]


def test_arch_string_lists_every_layer(tiny_spec: ArchSpec) -> None:
    parts = tiny_spec.to_string().split(" ")
    assert parts[0] == "r32"
    assert parts[1] == tiny_spec.stem.to_string()
    assert parts[2:-1] == [block.to_string() for block in tiny_spec.blocks]
    assert parts[-1] == "head_c96_h64_n10_hs"


# --- validation ------------------------------------------------------------------------------------


def test_even_kernel_is_rejected() -> None:
    with pytest.raises(ValueError, match="kernel must be odd, got 4"):
        BlockSpec(kind="ir", kernel=4, stride=1, mid_channels=32, out_channels=16)


def test_ds_block_with_se_is_rejected() -> None:
    with pytest.raises(ValueError, match="no squeeze-and-excite"):
        BlockSpec(kind="ds", kernel=3, stride=1, mid_channels=32, out_channels=16, se=True)


def test_ds_block_whose_mid_differs_from_its_input_is_rejected(tiny_spec: ArchSpec) -> None:
    with pytest.raises(ValueError, match=r"blocks\[0\].*expansion width 24 must equal its input width 16"):
        _replace_block(tiny_spec, 0, mid_channels=24)
    with pytest.raises(ValueError, match=r"blocks\[5\].*expansion width 40 must equal its input width 32"):
        _replace_block(tiny_spec, 5, mid_channels=40)
    # Changing the width feeding a ds block breaks it too.
    with pytest.raises(ValueError, match=r"blocks\[5\]"):
        _replace_block(tiny_spec, 4, out_channels=48)


def test_empty_blocks_are_rejected(tiny_spec: ArchSpec) -> None:
    with pytest.raises(ValueError, match="blocks"):
        _replace(tiny_spec, blocks=[])


@pytest.mark.parametrize(
    "fields",
    [{"stride": 3}, {"kernel": 13}, {"out_channels": 0}, {"activation": "swish"}, {"kind": "mb"}],
    ids=str,
)
def test_block_field_limits(fields: dict) -> None:
    base = {"kind": "ir", "kernel": 3, "stride": 1, "mid_channels": 32, "out_channels": 16}
    with pytest.raises(ValueError):
        BlockSpec.model_validate({**base, **fields})


def test_specs_are_frozen(tiny_spec: ArchSpec) -> None:
    with pytest.raises(ValueError):
        tiny_spec.resolution = 64  # type: ignore[misc]
    with pytest.raises(ValueError):
        tiny_spec.blocks[0].kernel = 5  # type: ignore[misc]


# --- content hash ----------------------------------------------------------------------------------


def test_content_hash_is_stable_and_ignores_the_name(tiny_spec: ArchSpec) -> None:
    digest = tiny_spec.content_hash()
    assert len(digest) == 20 and all(c in "0123456789abcdef" for c in digest)
    assert _replace(tiny_spec).content_hash() == digest
    assert ArchSpec.from_json(tiny_spec.to_json()).content_hash() == digest
    assert tiny_spec.model_copy(update={"name": "renamed"}).content_hash() == digest
    assert _replace(tiny_spec, name=None).content_hash() == digest


def test_content_hash_is_the_same_in_a_fresh_interpreter(tiny_spec: ArchSpec) -> None:
    specs = [tiny_spec, reference_spec("mobilenet_v3_small", 0.75, 160)]
    script = (
        "import sys, json\n"
        "from search_spaces.arch_spec import ArchSpec\n"
        "print(json.dumps([ArchSpec.from_json(t).content_hash() for t in json.load(sys.stdin)]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps([spec.to_json() for spec in specs]),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        cwd=REPO_ROOT,
    )
    assert json.loads(result.stdout) == [spec.content_hash() for spec in specs]


def _edit(spec: ArchSpec, edit: Callable[[dict], object]) -> ArchSpec:
    """A re-validated copy of `spec` after `edit` changes its dumped fields in place."""
    document = spec.model_dump(mode="json")
    edit(document)
    return ArchSpec.model_validate(document)


def _set_stem_channels(document: dict) -> None:
    document["stem"]["out_channels"] = 24
    document["blocks"][0]["mid_channels"] = 24  # the first block is ds: it must follow the stem


HASH_CHANGES: dict[str, Callable[[dict], object]] = {
    "resolution": lambda d: d.update(resolution=64),
    "in_channels": lambda d: d.update(in_channels=1),
    "stem_channels": _set_stem_channels,
    "stem_kernel": lambda d: d["stem"].update(kernel=5),
    "stem_stride": lambda d: d["stem"].update(stride=1),
    "stem_activation": lambda d: d["stem"].update(activation="relu"),
    "block_out_channels": lambda d: d["blocks"][3].update(out_channels=32),
    "block_mid_channels": lambda d: d["blocks"][3].update(mid_channels=96),
    "block_kernel": lambda d: d["blocks"][3].update(kernel=5),
    "block_stride": lambda d: d["blocks"][3].update(stride=2),
    "block_se_off": lambda d: d["blocks"][3].update(se=False),
    "block_se_on": lambda d: d["blocks"][4].update(se=True),
    "block_activation": lambda d: d["blocks"][3].update(activation="hswish"),
    "ds_activation": lambda d: d["blocks"][0].update(activation="relu"),
    "ds_kernel": lambda d: d["blocks"][0].update(kernel=5),
    "block_kind": lambda d: d["blocks"][1].update(kind="ds"),
    "drop_block": lambda d: d["blocks"].pop(),
    "head_conv": lambda d: d["head"].update(conv_channels=128),
    "head_hidden": lambda d: d["head"].update(hidden_channels=0),
    "num_classes": lambda d: d["head"].update(num_classes=100),
    "head_activation": lambda d: d["head"].update(activation="relu6"),
    "head_dropout": lambda d: d["head"].update(dropout=0.5),
}


def test_content_hash_changes_with_every_field(tiny_spec: ArchSpec) -> None:
    base = tiny_spec.content_hash()
    digests = {"base": base}
    for name, change in HASH_CHANGES.items():
        changed = _edit(tiny_spec, change)
        assert changed != tiny_spec, name
        digests[name] = changed.content_hash()
        assert digests[name] != base, name
    assert len(set(digests.values())) == len(digests)


def test_with_num_classes_changes_only_the_classifier(tiny_spec: ArchSpec) -> None:
    changed = tiny_spec.with_num_classes(100)
    assert changed.head.num_classes == 100
    assert changed.head.model_copy(update={"num_classes": 10}) == tiny_spec.head
    assert (changed.stem, changed.blocks, changed.resolution) == (tiny_spec.stem, tiny_spec.blocks, 32)


# --- channel helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(4, 8), (11.2, 16), (16, 16), (18, 24), (30, 32), (36, 40), (60, 64), (120, 120), (1280 * 1.4, 1792)],
)
def test_make_divisible_examples(value: float, expected: int) -> None:
    assert make_divisible(value) == expected


def test_make_divisible_properties() -> None:
    rng = np.random.default_rng(7)
    for value in rng.uniform(1.0, 3000.0, 500):
        rounded = make_divisible(float(value))
        assert rounded % 8 == 0
        assert rounded >= 8
        assert rounded >= 0.9 * value
        assert abs(rounded - value) <= 8
    assert make_divisible(3, 8, min_value=16) == 16


def test_se_channels_is_a_quarter_rounded_to_eight() -> None:
    assert [se_channels(c) for c in (16, 72, 120, 240, 960)] == [8, 24, 32, 64, 240]


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [(224, 3, 2, 112), (33, 3, 2, 17), (33, 7, 2, 17), (7, 5, 1, 7), (1, 3, 2, 1), (2, 5, 2, 1)],
)
def test_conv_output_size(size: int, kernel: int, stride: int, expected: int) -> None:
    assert conv_output_size(size, kernel, stride) == expected
