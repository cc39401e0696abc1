"""The torch builder: shapes, residuals, squeeze-and-excite, expansion and single-layer modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from search_spaces import (
    ArchSpec,
    BlockSpec,
    LayerKey,
    SearchSpace,
    build_layer,
    build_model,
    reference_names,
    reference_spec,
)
from search_spaces.arch_spec import se_channels
from search_spaces.builder import (
    DepthwiseSeparable,
    Head,
    InvertedResidual,
    SqueezeExcite,
    make_activation,
)

ACTIVATION_TYPES = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish}


def _sampled_specs(spaces32: dict[str, SearchSpace], per_space: int = 1, seed: int = 0) -> list[ArchSpec]:
    rng = np.random.default_rng(seed)
    return [space.decode(g) for space in spaces32.values() for g in space.sample_population(per_space, rng)]


def _specs_at_32(tiny: ArchSpec, spaces32: dict[str, SearchSpace]) -> list[ArchSpec]:
    refs = [reference_spec(name, resolution=32, num_classes=10) for name in reference_names()]
    return [tiny, *refs, *_sampled_specs(spaces32)]


def _forward(module: nn.Module, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    module.eval()
    with torch.no_grad():
        return module(torch.randn(shape, generator=torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize("name", reference_names())
def test_reference_output_shape_at_32(name: str) -> None:
    torch.manual_seed(0)
    spec = reference_spec(name, resolution=32, num_classes=10)
    output = _forward(build_model(spec), (1, 3, 32, 32))
    assert output.shape == (1, 10)
    assert torch.isfinite(output).all()


def test_sampled_space_members_output_shape(spaces32: dict[str, SearchSpace]) -> None:
    torch.manual_seed(0)
    for spec in _sampled_specs(spaces32, per_space=2, seed=3):
        assert spec.resolution == 32
        output = _forward(build_model(spec), (1, 3, 32, 32))
        assert output.shape == (1, spec.head.num_classes) == (1, 10)


def test_batch_and_input_channels_are_respected(tiny_spec: ArchSpec) -> None:
    torch.manual_seed(0)
    assert _forward(build_model(tiny_spec), (3, 3, 32, 32)).shape == (3, 10)
    grey = tiny_spec.model_copy(update={"in_channels": 1})
    model = build_model(grey)
    assert model.stem[0].in_channels == 1
    assert _forward(model, (2, 1, 32, 32)).shape == (2, 10)


def test_feature_map_sizes_match_the_layer_keys_at_an_odd_resolution(tiny_spec: ArchSpec) -> None:
    spec = tiny_spec.model_copy(update={"resolution": 33})
    torch.manual_seed(0)
    model = build_model(spec)
    seen: list[tuple[int, ...]] = []
    hooks = [
        layer.register_forward_hook(lambda _m, inputs, _o: seen.append(tuple(inputs[0].shape)))
        for layer in (*model.blocks, model.head)
    ]
    _forward(model, (1, 3, 33, 33))
    for hook in hooks:
        hook.remove()
    assert seen == [key.input_shape for key in spec.layer_keys()[1:]]


def _block_cases(tiny: ArchSpec, spaces32: dict[str, SearchSpace]) -> list[tuple[int, BlockSpec, nn.Module]]:
    """(input width, spec, built module) for every block of several networks."""
    cases = []
    for spec in [tiny, reference_spec("mobilenet_v2", 0.5, 32), reference_spec("mobilenet_v3_large", 1.0, 32)]:
        model = build_model(spec)
        for channels, block, module in zip(spec.block_input_channels(), spec.blocks, model.blocks, strict=True):
            cases.append((channels, block, module))
    for spec in _sampled_specs(spaces32, per_space=1, seed=11):
        model = build_model(spec)
        cases += list(zip(spec.block_input_channels(), spec.blocks, model.blocks, strict=True))
    return cases


def test_blocks_have_the_right_structure(tiny_spec: ArchSpec, spaces32: dict[str, SearchSpace]) -> None:
    residuals, expansions, se_blocks = set(), set(), set()
    for channels, block, module in _block_cases(tiny_spec, spaces32):
        if block.kind == "ds":
            assert isinstance(module, DepthwiseSeparable)
            assert not any(isinstance(m, SqueezeExcite) for m in module.modules())
            depthwise = module.depthwise[0]
            assert (depthwise.in_channels, depthwise.groups) == (channels, channels)
            assert module.pointwise[0].out_channels == block.out_channels
            continue
        assert isinstance(module, InvertedResidual)
        # Residual exactly when stride 1 and widths match.
        expected_residual = block.stride == 1 and channels == block.out_channels
        assert module.residual is expected_residual
        residuals.add(expected_residual)
        # SE present iff requested, at a quarter of the expanded width.
        assert (module.se is not None) is block.se
        if block.se:
            assert module.se.reduce.out_channels == se_channels(block.mid_channels)
            assert module.se.expand.out_channels == block.mid_channels
        se_blocks.add(block.se)
        # No expansion conv when the expanded width is the input width.
        assert (module.expand is None) is (block.mid_channels == channels)
        if module.expand is not None:
            conv = module.expand[0]
            assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (channels, block.mid_channels, (1, 1))
        expansions.add(module.expand is None)
        depthwise = module.depthwise[0]
        assert depthwise.groups == depthwise.in_channels == block.mid_channels
        assert depthwise.kernel_size == (block.kernel, block.kernel)
        assert depthwise.stride == (block.stride, block.stride)
        assert depthwise.padding == (block.kernel // 2, block.kernel // 2)
        project = module.project
        assert project[0].out_channels == block.out_channels
        assert len(project) == 2  # linear bottleneck: conv + BN, no activation
    # The cases cover both sides of every branch.
    assert residuals == expansions == se_blocks == {True, False}


def test_activations_follow_the_spec(tiny_spec: ArchSpec) -> None:
    model = build_model(tiny_spec)
    assert isinstance(model.stem[2], nn.Hardswish)
    for block, module in zip(tiny_spec.blocks, model.blocks, strict=True):
        expected = ACTIVATION_TYPES[block.activation]
        kinds = {type(m) for m in module.modules() if type(m) in ACTIVATION_TYPES.values()}
        if block.se:
            # SE's squeeze uses ReLU whatever the block's activation.
            assert isinstance(module.se.act, nn.ReLU)
            assert isinstance(module.se.gate, nn.Hardsigmoid)
            if expected is not nn.ReLU:
                kinds.discard(nn.ReLU)
        assert kinds == {expected}, block.to_string()


def test_residual_adds_the_input(tiny_spec: ArchSpec) -> None:
    """With the projection's BatchNorm zeroed, a residual block is the identity and others give zero."""
    torch.manual_seed(0)
    model = build_model(tiny_spec).eval()
    checked = 0
    for key, block, module in zip(tiny_spec.layer_keys()[1:-1], tiny_spec.blocks, model.blocks, strict=True):
        if block.kind != "ir":
            continue
        with torch.no_grad():
            module.project[1].weight.zero_()
            module.project[1].bias.zero_()
            x = torch.randn(key.input_shape, generator=torch.Generator().manual_seed(1))
            y = module(x)
        if block.has_residual(key.in_channels):
            assert torch.equal(y, x)
        else:
            assert torch.count_nonzero(y) == 0
        checked += 1
    assert checked == 5


def test_squeeze_excite_gates_each_channel() -> None:
    torch.manual_seed(0)
    se = SqueezeExcite(32).eval()
    x = torch.randn(2, 32, 5, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        scale = se(x) / x
    # One gate per sample and channel, constant over space, within hard-sigmoid's [0, 1].
    assert torch.allclose(scale, scale[:, :, :1, :1].expand_as(scale), rtol=1e-5, atol=1e-5)
    assert scale.min() >= 0 and scale.max() <= 1


@pytest.mark.parametrize(
    ("name", "conv", "hidden"),
    [
        ("mobilenet_v1", False, False),
        ("mobilenet_v2", True, False),
        ("mobilenet_v3_large", True, True),
        ("mobilenet_v3_small", True, True),
    ],
)
def test_head_structure(name: str, conv: bool, hidden: bool) -> None:
    spec = reference_spec(name, resolution=32, num_classes=10)
    head = build_model(spec).head
    assert isinstance(head, Head)
    assert (head.conv is not None) is conv
    assert (head.hidden is not None) is hidden
    assert head.classifier.out_features == 10
    if hidden:
        assert head.hidden[0].out_features == spec.head.hidden_channels
        assert not any(isinstance(m, nn.BatchNorm2d) for m in head.hidden.modules())
    assert head.dropout.p == spec.head.dropout


def test_build_layer_output_is_the_next_layers_input(tiny_spec: ArchSpec, spaces32) -> None:
    specs = [tiny_spec, reference_spec("mobilenet_v3_small", 0.75, 32), *_sampled_specs(spaces32, seed=5)]
    for spec in specs:
        keys = spec.layer_keys()
        for key, following in zip(keys, keys[1:] + [None], strict=True):
            output = _forward(build_layer(key), key.input_shape)
            expected = following.input_shape if following is not None else (1, spec.head.num_classes)
            assert tuple(output.shape) == expected, str(key)


def test_build_layer_from_a_parsed_key() -> None:
    key = LayerKey.parse("ir_k5_s2_e72_c40_se_hs@14x14x24")
    module = build_layer(key)
    assert isinstance(module, InvertedResidual) and module.se is not None and not module.residual
    assert _forward(module, key.input_shape).shape == (1, 40, 7, 7)
    head = build_layer(LayerKey.parse("head_c96_h64_n10_hs@3x3x40"))
    assert isinstance(head, Head)
    assert _forward(head, (1, 40, 3, 3)).shape == (1, 10)


def test_layers_chained_reproduce_the_network(tiny_spec: ArchSpec) -> None:
    """build_layer builds the same modules as build_model: weights load strictly, outputs agree."""
    torch.manual_seed(0)
    model = build_model(tiny_spec).eval()
    parts = [model.stem, *model.blocks, model.head]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    out = x
    with torch.no_grad():
        for key, part in zip(tiny_spec.layer_keys(), parts, strict=True):
            layer = build_layer(key)
            layer.load_state_dict(part.state_dict(), strict=True)
            out = layer.eval()(out)
        assert torch.allclose(out, model(x), rtol=1e-5, atol=1e-6)


def test_building_is_deterministic_under_a_seed(tiny_spec: ArchSpec) -> None:
    torch.manual_seed(123)
    first = build_model(tiny_spec).state_dict()
    torch.manual_seed(123)
    second = build_model(tiny_spec).state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_make_activation_rejects_unknown_names() -> None:
    assert isinstance(make_activation("relu6"), nn.ReLU6)
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        make_activation("gelu")
