"""ONNX export of networks and single layers, and the ONNX Runtime parity check.

A freshly built network is a poor parity witness: BatchNorm is the identity in eval mode and the
classifier starts near zero, so almost any graph "matches". Every model here is first given random
weights and BatchNorm statistics (`randomise`), and each parity test asserts that the output really
depends on the input before trusting the comparison.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from search_spaces import SPACES, ArchSpec, LayerKey, build_layer, build_model, reference_names, reference_spec
from search_spaces.onnx_export import (
    INPUT_NAME,
    OPSET,
    OUTPUT_NAME,
    check_parity,
    check_spec_parity,
    export_module,
    export_spec,
)

TOLERANCE = 1e-4


def randomise(module: nn.Module, input_shape: tuple[int, ...], seed: int) -> nn.Module:
    """Give `module` random, well-scaled weights and BatchNorm statistics; leave it in eval mode.

    Convolutions and linear layers get normal weights with std 1/sqrt(fan-in) (a fixed std such as
    0.5 on a 1280-wide layer gives logits in the thousands, where float32 rounding alone exceeds the
    1e-4 tolerance). BatchNorm gets a random affine transform; its running statistics are measured on
    32 random inputs and then perturbed, so that every channel carries signal in eval mode.
    """
    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.Conv2d):
                layer.weight.normal_(0.0, layer.weight[0].numel() ** -0.5, generator=generator)
                if layer.bias is not None:
                    layer.bias.normal_(0.0, 0.1, generator=generator)
            elif isinstance(layer, nn.BatchNorm2d):
                layer.weight.uniform_(0.75, 1.25, generator=generator)
                layer.bias.normal_(0.0, 0.1, generator=generator)
            elif isinstance(layer, nn.Linear):
                layer.weight.normal_(0.0, layer.in_features**-0.5, generator=generator)
                layer.bias.normal_(0.0, 0.1, generator=generator)
        momenta = [norm.momentum for norm in norms]
        for norm in norms:
            norm.momentum = 1.0  # running statistics := this batch's statistics
        module.train()
        module(torch.randn((32, *input_shape[1:]), generator=generator))
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
            noise = torch.randn(norm.running_mean.shape, generator=generator)
            norm.running_mean.add_(0.1 * noise * norm.running_var.sqrt())
            norm.running_var.mul_(torch.empty(norm.running_var.shape).uniform_(0.8, 1.25, generator=generator))
            norm.running_var.clamp_(min=0.01)
    return module.eval()


def assert_output_depends_on_input(module: nn.Module, input_shape: tuple[int, ...]) -> None:
    """The parity check is only meaningful if different inputs give clearly different outputs."""
    with torch.no_grad():
        outputs = module(torch.randn((8, *input_shape[1:]), generator=torch.Generator().manual_seed(99)))
    assert float(outputs.std()) > 0.1
    assert float(outputs.std(dim=0).mean()) > 0.1


def _input_shape(spec: ArchSpec) -> tuple[int, int, int, int]:
    return (1, spec.in_channels, spec.resolution, spec.resolution)


CASES = [*(f"reference:{name}" for name in reference_names()), *(f"space:{name}" for name in SPACES)]


def _case_spec(case: str) -> ArchSpec:
    """A reference network or a sampled member of a space, at 32 px and 10 classes."""
    kind, name = case.split(":")
    if kind == "space":
        space = SPACES[name].with_options(resolutions=[32], num_classes=10)
        return space.decode(space.sample(np.random.default_rng(0)))
    return reference_spec(name, 1.0, 32, num_classes=10)


@pytest.fixture(scope="module", params=CASES)
def exported(request: pytest.FixtureRequest) -> tuple[ArchSpec, nn.Module, bytes]:
    """(spec, randomised model, its ONNX bytes), exported once per case for the whole module."""
    spec = _case_spec(request.param)
    torch.manual_seed(0)
    model = randomise(build_model(spec), _input_shape(spec), seed=0)
    return spec, model, export_spec(spec, model)


def test_exported_model_is_valid_onnx_at_opset_17_or_later(exported) -> None:
    spec, _, onnx_bytes = exported
    proto = onnx.load_from_string(onnx_bytes)
    onnx.checker.check_model(proto)
    versions = {entry.domain: entry.version for entry in proto.opset_import}
    assert versions.get("", versions.get("ai.onnx")) >= 17
    assert OPSET >= 17
    assert [i.name for i in proto.graph.input] == [INPUT_NAME]
    assert [o.name for o in proto.graph.output] == [OUTPUT_NAME]
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == list(_input_shape(spec))
    out_dims = [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
    assert out_dims == [1, spec.head.num_classes]


def test_onnx_runtime_matches_pytorch(exported) -> None:
    spec, model, onnx_bytes = exported
    assert_output_depends_on_input(model, _input_shape(spec))
    report = check_parity(model, onnx_bytes, _input_shape(spec))
    assert report.tolerance >= TOLERANCE  # scaled by the largest output, never below 1e-4
    assert report.max_abs_diff <= TOLERANCE
    assert report.ok
    assert not model.training


def test_parity_detects_a_differently_initialised_model(exported) -> None:
    spec, _, onnx_bytes = exported
    torch.manual_seed(1)
    other = randomise(build_model(spec), _input_shape(spec), seed=1)
    report = check_parity(other, onnx_bytes, _input_shape(spec))
    assert not report.ok
    assert report.max_abs_diff > 1e-2


def test_parity_detects_one_small_change(exported) -> None:
    """Shifting a single BatchNorm's bias by 0.02 is caught, so the tolerance is not too loose."""
    spec, model, onnx_bytes = exported
    changed = copy.deepcopy(model)
    norms = [m for m in changed.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        norms[len(norms) // 2].bias.add_(0.02)
    report = check_parity(changed, onnx_bytes, _input_shape(spec))
    assert not report.ok
    assert report.max_abs_diff > TOLERANCE


def _tiny_keys(tiny: ArchSpec) -> list[LayerKey]:
    keys = tiny.layer_keys()
    return [keys[0], keys[1], keys[3], keys[4], keys[-1]]  # stem, ds, ir+SE, ir+SE+residual, head


def test_single_layers_export_with_parity(tiny_spec: ArchSpec) -> None:
    for index, key in enumerate(_tiny_keys(tiny_spec)):
        torch.manual_seed(index)
        layer = randomise(build_layer(key), key.input_shape, seed=index)
        onnx_bytes = export_module(layer, key.input_shape)
        onnx.checker.check_model(onnx.load_from_string(onnx_bytes))
        assert_output_depends_on_input(layer, key.input_shape)
        report = check_parity(layer, onnx_bytes, key.input_shape, seed=index)
        assert report.ok, (str(key), report)


def test_check_spec_parity_with_a_given_module(tiny_spec: ArchSpec) -> None:
    torch.manual_seed(0)
    model = randomise(build_model(tiny_spec), _input_shape(tiny_spec), seed=3)
    assert_output_depends_on_input(model, _input_shape(tiny_spec))
    assert check_spec_parity(tiny_spec, model).ok
    assert check_spec_parity(tiny_spec).ok  # a freshly built network exports too


@pytest.mark.parametrize("opset", [0, 11, 13, 16])
def test_export_module_rejects_old_opsets(opset: int) -> None:
    layer = build_layer(LayerKey.parse("ir_k3_s1_e48_c16_re@8x8x16"))
    with pytest.raises(ValueError, match=f"opset must be >= 17, got {opset}"):
        export_module(layer, (1, 16, 8, 8), opset=opset)


def test_export_module_honours_a_newer_opset_and_restores_the_mode() -> None:
    key = LayerKey.parse("ir_k5_s2_e72_c40_se_hs@8x8x24")
    layer = build_layer(key).train()
    onnx_bytes = export_module(layer, key.input_shape, opset=18)
    assert layer.training
    versions = {entry.domain: entry.version for entry in onnx.load_from_string(onnx_bytes).opset_import}
    assert versions.get("", versions.get("ai.onnx")) == 18
    check_parity(layer, onnx_bytes, key.input_shape)
    assert layer.training  # check_parity runs in eval mode and puts the module back
