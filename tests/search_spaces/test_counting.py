"""Analytic parameter and multiply-add counts, checked against hooks on the built modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from search_spaces import (
    ArchSpec,
    Counts,
    SearchSpace,
    build_layer,
    build_model,
    count_spec,
    count_with_hooks,
    layer_counts,
    reference_names,
    reference_spec,
)


def _input_shape(spec: ArchSpec) -> tuple[int, int, int, int]:
    return (1, spec.in_channels, spec.resolution, spec.resolution)


def _measured(spec: ArchSpec) -> Counts:
    torch.manual_seed(0)
    return count_with_hooks(build_model(spec), _input_shape(spec))


@pytest.mark.parametrize("name", reference_names())
@pytest.mark.parametrize(("width", "resolution"), [(0.35, 96), (0.75, 160), (1.0, 224)])
def test_reference_counts_match_the_built_model(name: str, width: float, resolution: int) -> None:
    spec = reference_spec(name, width, resolution)
    assert count_spec(spec) == _measured(spec)


def test_sampled_space_members_match_the_built_model(spaces32: dict[str, SearchSpace]) -> None:
    rng = np.random.default_rng(2024)
    for space in spaces32.values():
        for genome in space.sample_population(10, rng):
            spec = space.decode(genome)
            assert count_spec(spec) == _measured(spec), spec.to_string()


def test_tiny_spec_matches_the_built_model(tiny_spec: ArchSpec) -> None:
    assert count_spec(tiny_spec) == _measured(tiny_spec)
    grey = tiny_spec.model_copy(update={"in_channels": 1, "resolution": 33})
    assert count_spec(grey) == _measured(grey)


def test_layer_counts_by_hand(tiny_spec: ArchSpec) -> None:
    """Worked examples of the conventions: BN scale and shift are parameters, SE's 1x1s are counted."""
    keys = tiny_spec.layer_keys()
    # Stem: 3 -> 16, 3x3, stride 2, 32 -> 16 px.
    assert layer_counts(keys[0]) == Counts(params=432 + 2 * 16, madds=432 * 16 * 16)
    # ds_k3_s1_e16_c16 at 16 px: depthwise 16*9 weights, pointwise 16*16, each with BN.
    assert layer_counts(keys[1]) == Counts(params=144 + 32 + 256 + 32, madds=(144 + 256) * 16 * 16)
    # ir_k5_s2_e48_c24_se at 16 px: expand at 16 px, depthwise, SE (squeeze 16, with biases), project.
    expand, depthwise, project = 16 * 48, 48 * 25, 48 * 24
    se_reduce, se_expand = 48 * 16, 16 * 48
    assert layer_counts(keys[3]) == Counts(
        params=(expand + 96) + (depthwise + 96) + (se_reduce + 16) + (se_expand + 48) + (project + 48),
        madds=expand * 16 * 16 + depthwise * 8 * 8 + se_reduce + se_expand + project * 8 * 8,
    )
    # Head at 2x2x40: 1x1 conv to 96 with BN, hidden linear 96 -> 64, classifier 64 -> 10.
    assert str(keys[-1]) == "head_c96_h64_n10_hs@2x2x40"
    assert layer_counts(keys[-1]) == Counts(
        params=(40 * 96 + 192) + (96 * 64 + 64) + (64 * 10 + 10),
        madds=40 * 96 * 4 + 96 * 64 + 64 * 10,
    )


def _per_layer_specs(tiny: ArchSpec, spaces32: dict[str, SearchSpace]) -> list[ArchSpec]:
    rng = np.random.default_rng(5)
    sampled = [space.decode(space.sample(rng)) for space in spaces32.values()]
    refs = [reference_spec("mobilenet_v1", 0.5, 64), reference_spec("mobilenet_v3_small", 0.75, 96)]
    return [tiny, *refs, *sampled]


def test_layer_counts_match_each_built_layer(tiny_spec: ArchSpec, spaces32: dict[str, SearchSpace]) -> None:
    for spec in _per_layer_specs(tiny_spec, spaces32):
        for key in spec.layer_keys():
            assert layer_counts(key) == count_with_hooks(build_layer(key), key.input_shape), str(key)


def test_layer_counts_sum_to_the_network(tiny_spec: ArchSpec, spaces32: dict[str, SearchSpace]) -> None:
    specs = _per_layer_specs(tiny_spec, spaces32) + [reference_spec(n) for n in reference_names()]
    for spec in specs:
        total = Counts(0, 0)
        for key in spec.layer_keys():
            total += layer_counts(key)
        assert total == count_spec(spec)
        assert total.params > 0 and total.madds > 0


def test_counts_add_fieldwise() -> None:
    assert Counts(1, 2) + Counts(30, 40) == Counts(31, 42)


def test_count_with_hooks_leaves_the_module_as_it_was(tiny_spec: ArchSpec) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_spec).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first = count_with_hooks(model, _input_shape(tiny_spec))
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics untouched
    # Hooks were removed: a second count is not doubled.
    assert count_with_hooks(model.eval(), _input_shape(tiny_spec)) == first
    assert not model.training
