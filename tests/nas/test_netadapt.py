"""NetAdapt: channel groups, weight-preserving pruning, and the loop under analytic and real latencies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from latency_lut.device import Device, this_machine
from latency_lut.interpolation import INTERPOLATED_SOURCE
from latency_lut.predictor import LatencyPredictor
from latency_lut.profiler import measure_key
from latency_lut.table import LatencyTable, LutEntry
from nas.netadapt import (
    InterpolationError,
    NetAdaptStep,
    apply_widths,
    candidate_widths,
    channel_groups,
    field_widths,
    interpolate_from,
    kept_channels,
    netadapt,
    prunable_groups,
    prune_model,
    select_channels,
)
from nas.search.runner import _latency_function
from search_spaces.arch_spec import ArchSpec, BlockSpec, HeadSpec, LayerKey, StemSpec
from search_spaces.builder import build_model
from search_spaces.counting import count_spec, layer_counts
from search_spaces.reference import reference_spec


@pytest.fixture(scope="module", autouse=True)
def single_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def small_spec(resolution: int = 16) -> ArchSpec:
    """Every kind of group: a ds block and an ir block without expansion tied to their inputs, a residual
    chain, SE, expansion widths, and a head with conv and hidden layers."""
    return ArchSpec(
        resolution=resolution,
        stem=StemSpec(out_channels=16),
        blocks=(
            BlockSpec(kind="ds", kernel=3, stride=1, mid_channels=16, out_channels=24, activation="relu"),
            BlockSpec(kind="ir", kernel=3, stride=2, mid_channels=72, out_channels=32, activation="relu"),
            BlockSpec(kind="ir", kernel=3, stride=1, mid_channels=96, out_channels=32, se=True, activation="hswish"),
            BlockSpec(kind="ir", kernel=5, stride=2, mid_channels=32, out_channels=48, activation="hswish"),
        ),
        head=HeadSpec(conv_channels=96, hidden_channels=64, num_classes=10),
        name="small",
    )


def trained_like(spec: ArchSpec, seed: int = 0) -> nn.Module:
    """A model whose BatchNorm layers carry non-trivial statistics, as after training, in eval mode."""
    torch.manual_seed(seed)
    model = build_model(spec)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.BatchNorm2d):
                layer.running_mean.normal_()
                layer.running_var.uniform_(0.5, 2.0)
                layer.weight.normal_()
                layer.bias.normal_()
                layer.num_batches_tracked.fill_(7)
            elif isinstance(layer, nn.Linear | nn.Conv2d) and layer.bias is not None:
                layer.bias.normal_()
    return model.eval()


def test_v3_small_groups_follow_residual_chains_and_ties() -> None:
    spec = reference_spec("mobilenet_v3_small", resolution=32, num_classes=10)
    groups = {group.name: group for group in channel_groups(spec)}
    # Block 0 has no expansion conv (mid == in == 16): its depthwise width is the stem's.
    assert groups["stem.out+blocks.0.mid"].kind == "output"
    # Residual chains: a stride-2 (or width-changing) block starts the chain its stride-1 followers add to.
    assert "blocks.1.out+blocks.2.out" in groups
    assert "blocks.3.out+blocks.4.out+blocks.5.out" in groups
    assert "blocks.6.out+blocks.7.out" in groups
    assert "blocks.8.out+blocks.9.out+blocks.10.out" in groups
    assert groups["blocks.0.out"].width == 16
    expansions = [g.name for g in groups.values() if g.kind == "expansion"]
    assert expansions == [f"blocks.{i}.mid" for i in range(1, 11)]
    assert groups["head.conv"].kind == "head_conv" and groups["head.hidden"].kind == "head_hidden"
    # Every field belongs to exactly one group; the classifier and the image channels to none.
    fields = [field for group in groups.values() for field in group.fields]
    assert sorted(fields) == sorted(field_widths(spec))
    assert {g.name for g in prunable_groups(spec)} == set(groups)
    # Block 6 (40 -> 48, stride 1) must not become residual: its chain skips width 40.
    assert 40 not in candidate_widths(spec, groups["blocks.6.out+blocks.7.out"])


def test_small_spec_groups_tie_depthwise_widths_to_their_inputs() -> None:
    spec = small_spec()
    names = [group.name for group in channel_groups(spec)]
    assert names == [
        "stem.out+blocks.0.mid",
        "blocks.0.out",
        "blocks.1.mid",
        "blocks.1.out+blocks.2.out+blocks.3.mid",
        "blocks.2.mid",
        "blocks.3.out",
        "head.conv",
        "head.hidden",
    ]
    assert prunable_groups(spec)[0].width == 16 and candidate_widths(spec, prunable_groups(spec)[0]) == [8]


def test_apply_widths_keeps_multiples_of_8_and_valid_specs() -> None:
    spec = small_spec()
    for group in prunable_groups(spec):
        for width in candidate_widths(spec, group):
            narrowed = apply_widths(spec, group, width)
            assert ArchSpec.from_json(narrowed.to_json()) == narrowed
            widths = field_widths(narrowed)
            assert all(widths[field] == width for field in group.fields)
            assert all(value % 8 == 0 for value in widths.values())
            assert narrowed.head.num_classes == 10 and narrowed.in_channels == 3
    chain = next(g for g in channel_groups(spec) if g.name.startswith("blocks.1.out"))
    narrowed = apply_widths(spec, chain, 16)
    assert narrowed.blocks[3].mid_channels == 16 and narrowed.block_input_channels()[3] == 16
    stem = channel_groups(spec)[0]
    assert apply_widths(spec, stem, 8).blocks[0].mid_channels == 8  # ds mid follows its input
    with pytest.raises(ValueError, match="multiple of 8"):
        apply_widths(spec, chain, 20)
    with pytest.raises(ValueError, match="multiple of 8"):
        apply_widths(spec, chain, 40)  # growing is not pruning
    with pytest.raises(ValueError, match="does not match"):
        apply_widths(narrowed, chain, 8)  # the group was read from another spec
    mid = next(g for g in channel_groups(spec) if g.name == "blocks.1.mid")
    with pytest.raises(ValueError, match="expansion conv"):
        apply_widths(spec, mid, 24)  # mid == in would drop block 1's expansion conv
    assert 24 not in candidate_widths(spec, mid)


def test_prune_model_without_removing_channels_reproduces_outputs_exactly() -> None:
    for spec in (small_spec(), reference_spec("mobilenet_v3_small", width=0.5, resolution=32, num_classes=10)):
        model = trained_like(spec)
        pruned = prune_model(model, spec, spec)
        images = torch.randn(3, 3, spec.resolution, spec.resolution)
        with torch.no_grad():
            assert torch.equal(pruned(images), model(images))
        assert not pruned.training
        for name, tensor in model.state_dict().items():
            assert torch.equal(pruned.state_dict()[name], tensor), name


def test_pruned_models_run_with_the_new_shapes() -> None:
    spec = small_spec()
    model = trained_like(spec)
    images = torch.randn(2, 3, 16, 16)
    for group in prunable_groups(spec):
        narrowed = apply_widths(spec, group, candidate_widths(spec, group)[-1])
        pruned = prune_model(model, spec, narrowed)
        with torch.no_grad():
            assert pruned(images).shape == (2, 10)
        reference = build_model(narrowed).state_dict()
        assert {k: v.shape for k, v in pruned.state_dict().items()} == {k: v.shape for k, v in reference.items()}
    # Several groups at once (what successive iterations produce), and train mode kept.
    narrowed = spec
    for name in ("blocks.1.out+blocks.2.out+blocks.3.mid", "blocks.2.mid", "head.hidden"):
        group = next(g for g in channel_groups(narrowed) if g.name == name)
        narrowed = apply_widths(narrowed, group, candidate_widths(narrowed, group)[-1])
    assert field_widths(narrowed)["blocks.2.mid"] == 16  # 8 would equal its input and drop the expansion
    pruned = prune_model(model.train(), spec, narrowed)
    assert pruned.training and pruned(images).shape == (2, 10)
    with pytest.raises(ValueError, match="only in channel counts"):
        prune_model(model, spec, spec.model_copy(update={"resolution": 32}))


def test_pruning_keeps_the_channels_with_the_largest_l1_norm() -> None:
    assert select_channels(torch.tensor([1.0, 5.0, 3.0, 5.0, 0.5]), 3).tolist() == [1, 2, 3]
    spec = small_spec()
    model = trained_like(spec)
    stem_conv = model.stem[0]
    norms = torch.tensor([3, 9, 1, 8, 2, 7, 4, 6, 10, 0.5, 11, 5, 12, 0.2, 13, 0.1])
    with torch.no_grad():
        stem_conv.weight.copy_(torch.sign(torch.randn_like(stem_conv.weight)) * norms[:, None, None, None] / 27)
    stem = channel_groups(spec)[0]
    narrowed = apply_widths(spec, stem, 8)
    expected = torch.sort(torch.argsort(norms, descending=True)[:8]).values
    assert kept_channels(model, spec, narrowed)["stem.out"].tolist() == expected.tolist()
    pruned = prune_model(model, spec, narrowed)
    assert torch.equal(pruned.stem[0].weight, stem_conv.weight[expected])
    assert torch.equal(pruned.stem[1].running_mean, model.stem[1].running_mean[expected])
    assert torch.equal(pruned.blocks[0].depthwise[0].weight, model.blocks[0].depthwise[0].weight[expected])
    assert torch.equal(pruned.blocks[0].pointwise[0].weight, model.blocks[0].pointwise[0].weight[:, expected])


def test_a_residual_chain_weighs_every_writer_equally() -> None:
    """Block 1 writes channels favouring 0-7 strongly; block 2 (100x larger weights) favours 8-15
    mildly. Normalised per writer the strong preference wins; raw sums would follow block 2."""
    spec = small_spec()
    model = trained_like(spec)
    first = torch.tensor([3.0] * 8 + [1.0] * 8)
    second = torch.tensor([1000.0] * 8 + [1100.0] * 8)[:32]
    first, second = torch.cat([first, first]), torch.cat([second, second])
    with torch.no_grad():
        for conv, norms in ((model.blocks[1].project[0], first), (model.blocks[2].project[0], second)):
            conv.weight.copy_(norms[:, None, None, None] / conv.weight[0].numel())
    chain = next(g for g in channel_groups(spec) if g.name.startswith("blocks.1.out"))
    kept = kept_channels(model, spec, apply_widths(spec, chain, 16))
    assert kept["blocks.1.out"].tolist() == list(range(8)) + list(range(16, 24))
    assert kept["blocks.3.mid"].tolist() == kept["blocks.2.out"].tolist() == kept["blocks.1.out"].tolist()


def _output_fidelity(spec: ArchSpec, model: nn.Module):
    """A deterministic 'accuracy' for tests: how closely a pruned model still computes the original."""
    images = torch.randn(4, 3, spec.resolution, spec.resolution, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = model.eval()(images)

    def evaluate(pruned: nn.Module, pruned_spec: ArchSpec) -> float:
        assert pruned.spec == pruned_spec
        pruned.eval()
        with torch.no_grad():
            return -float(((pruned(images) - reference) ** 2).mean())

    return evaluate


def madds_ms(spec: ArchSpec) -> float:
    return count_spec(spec).madds / 1e5


def test_netadapt_reaches_a_budget_choosing_least_loss_per_millisecond() -> None:
    spec = small_spec()
    model = trained_like(spec)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    start = madds_ms(spec)
    seen: list[NetAdaptStep] = []
    tuned: list[int] = []

    def fine_tune(pruned: nn.Module, pruned_spec: ArchSpec) -> float:
        tuned.append(id(pruned))
        return 0.5

    result = netadapt(
        spec, model, madds_ms, 0.7 * start, _output_fidelity(spec, model), on_step=seen.append, fine_tune=fine_tune
    )
    assert result.met_budget and result.stop_reason == "budget met"
    assert result.latency_ms == pytest.approx(madds_ms(result.spec)) and result.latency_ms <= 0.7 * start
    assert result.initial_latency_ms == start and seen == result.steps and result.iterations >= 2
    assert tuned == [id(result.model)] and result.final_accuracy == 0.5
    assert all(torch.equal(model.state_dict()[name], tensor) for name, tensor in before.items())
    assert result.model.spec == result.spec
    latency = start
    for step in result.steps:
        assert step.latency_before_ms == pytest.approx(latency)
        assert step.chosen.chosen and sum(p.chosen for p in step.proposals) == 1
        assert step.chosen.score == max(p.score for p in step.proposals)
        for proposal in step.proposals:
            assert proposal.latency_saved_ms >= step.target_ms - 1e-9
            assert ArchSpec.from_json(proposal.spec.to_json()) == proposal.spec
            assert all(width % 8 == 0 and width >= 8 for width in field_widths(proposal.spec).values())
            assert proposal.width < proposal.width_before
        latency = step.chosen.latency_ms
    assert len(result.history) == sum(len(step.proposals) for step in result.steps)


def test_an_unreachable_budget_stops_when_nothing_can_shrink() -> None:
    spec = small_spec()
    model = trained_like(spec)
    result = netadapt(spec, model, madds_ms, 1e-9, _output_fidelity(spec, model), initial_reduction=0.3)
    assert not result.met_budget and result.stop_reason == "no group can shrink further"
    assert prunable_groups(result.spec) == [] and result.iterations < 50
    capped = netadapt(spec, model, madds_ms, 1e-9, _output_fidelity(spec, model), max_iterations=2)
    assert not capped.met_budget and capped.stop_reason == "max_iterations reached" and capped.iterations == 2
    # A budget already met costs nothing.
    done = netadapt(spec, model, madds_ms, 2 * madds_ms(spec), _output_fidelity(spec, model))
    assert done.met_budget and done.iterations == 0 and done.spec == spec and done.accuracy is None


def test_netadapt_profiles_missing_keys_on_demand(fast_policy) -> None:
    """Real ONNX Runtime timings of every key NetAdapt asks for, measured as it asks, at 32 px."""
    spec = small_spec(resolution=32)
    model = trained_like(spec)
    table = LatencyTable(this_machine("netadapt-test", threads=1))
    asked: list[str] = []

    def measure(keys: list[str]) -> dict[str, float]:  # the worker's on-demand profiling, one key at a time
        asked.extend(keys)
        return {key: measure_key(key, 1, fast_policy).median_ms for key in keys}

    latency = _latency_function(LatencyPredictor(table), measure)
    start = latency(spec)
    assert set(asked) == set(spec.block_keys())
    result = netadapt(spec, model, latency, 0.9 * start, _output_fidelity(spec, model), initial_reduction=0.08)
    assert result.met_budget and result.latency_ms <= 0.9 * start
    assert set(result.spec.block_keys()) <= set(table.entries)
    assert all(table.entries[key].source == "profiler" for key in asked)
    for proposal in result.history:
        assert all(width % 8 == 0 for width in field_widths(proposal.spec).values())
        assert proposal.latency_ms == pytest.approx(LatencyPredictor(table).predict_ms(proposal.spec))


def test_a_remote_device_prices_narrower_keys_by_interpolation() -> None:
    spec = small_spec()
    device = Device(name="phone")
    # Stand-in for a kit's measurements: every key of the spec, priced by its multiply-adds.
    measured = {
        key: LutEntry(1e-6 * layer_counts(LayerKey.parse(key)).madds + 0.01, 0.0, 10, "phone")
        for key in spec.block_keys()
    }
    table = LatencyTable(device, measured)
    interpolate = interpolate_from(table)
    latency = _latency_function(LatencyPredictor(table), lambda keys: {key: interpolate(key) for key in keys})
    group = next(g for g in channel_groups(spec) if g.name == "blocks.2.mid")
    narrowed = apply_widths(spec, group, 48)
    assert latency(narrowed) < latency(spec)
    (key,) = set(table.entries) - set(measured)
    assert key.startswith("ir_k3_s1_e48_c32_se_hs") and table.entries[key].source == INTERPOLATED_SOURCE
    assert table.latency_ms(key) == pytest.approx(measured["ir_k3_s1_e96_c32_se_hs@4x4x32"].median_ms / 2)
    assert interpolate("ir_k3_s1_e40_c32_se_hs@4x4x32").source == INTERPOLATED_SOURCE
    empty = LatencyTable(device)
    with pytest.raises(InterpolationError, match="profiling kit"):
        interpolate_from(empty)(spec.block_keys()[0])
