"""Search spaces: genome layout, decode/encode, mutation, crossover, size and lookup-table keys."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from search_spaces import (
    SPACES,
    ArchSpec,
    BlockSpec,
    LayerKey,
    SearchSpace,
    StageChoices,
    get_space,
    make_divisible,
    reference_names,
    reference_spec,
)

SPACE_NAMES = list(SPACES)
N = 200


def one_stage_space(**changes: object) -> SearchSpace:
    """One stage of depth 1 or 2 with two kernels: six networks in all."""
    fields: dict = dict(
        name="tiny",
        description="brute-force size check",
        stem_channels=16,
        stages=(StageChoices(24, 2, (1, 2)),),
        head_hidden_channels=64,
        kernels=(3, 5),
        expansions=(3,),
        se_options=(False,),
        activations=("relu",),
        widths=(1.0,),
        resolutions=(32,),
        num_classes=10,
    )
    fields.update(changes)
    return SearchSpace(**fields)


def small_space() -> SearchSpace:
    """Two stages (one of stride 1), a fixed block, two widths and two resolutions: 1600 networks."""
    return one_stage_space(
        name="small",
        fixed_blocks=("ir_k3_s1_e16_c16_re",),
        stages=(StageChoices(24, 2, (1, 2)), StageChoices(40, 1, (1, 2))),
        se_options=(False, True),
        widths=(0.75, 1.0),
        resolutions=(32, 64),
    )


def _slot_limits(space: SearchSpace) -> tuple[int, int, int, int]:
    return (len(space.kernels), len(space.expansions), len(space.se_options), len(space.activations))


def assert_canonical(space: SearchSpace, genome: np.ndarray) -> None:
    """Fixed length, genes in range, and exactly the slots past each stage's depth hold -1."""
    assert genome.shape == (space.genome_length,)
    assert genome.dtype == np.int64
    assert 0 <= genome[0] < len(space.resolutions) and 0 <= genome[1] < len(space.widths)
    limits = _slot_limits(space)
    for stage_i, stage in enumerate(space.stages):
        assert 0 <= genome[2 + stage_i] < len(stage.depths)
        depth = stage.depths[genome[2 + stage_i]]
        for j in range(stage.max_depth):
            base = space.slot_gene_index(space.stage_slot_offsets[stage_i] + j)
            genes = genome[base : base + 4]
            if j < depth:
                assert all(0 <= g < limit for g, limit in zip(genes, limits, strict=True)), genes
            else:
                assert (genes == -1).all(), genes


def _stage_genes(space: SearchSpace, genome: np.ndarray, stage_i: int) -> np.ndarray:
    start = space.slot_gene_index(space.stage_slot_offsets[stage_i])
    stop = start + 4 * space.stages[stage_i].max_depth
    return np.concatenate([genome[2 + stage_i : 3 + stage_i], genome[start:stop]])


@pytest.fixture(params=SPACE_NAMES)
def space(request: pytest.FixtureRequest) -> SearchSpace:
    return SPACES[request.param]


# --- decode / encode -------------------------------------------------------------------------------


def test_decode_gives_valid_members(space: SearchSpace) -> None:
    rng = np.random.default_rng(0)
    for genome in space.sample_population(N, rng):
        spec = space.decode(genome)
        assert isinstance(spec, ArchSpec)
        assert ArchSpec.from_json(spec.to_json()) == spec  # re-validates every field
        assert spec.resolution == space.resolutions[genome[0]]
        width = space.widths[genome[1]]
        assert spec.stem == space.stem_spec(width)
        assert spec.head == space.head_spec(width)
        assert spec.head.num_classes == space.num_classes
        fixed = len(space.fixed_blocks)
        depths = [stage.depths[genome[2 + i]] for i, stage in enumerate(space.stages)]
        assert len(spec.blocks) == fixed + sum(depths)
        assert all(block.kind == "ir" for block in spec.blocks[fixed:])


def test_decode_accepts_lists(space: SearchSpace) -> None:
    genome = space.sample(np.random.default_rng(1))
    assert space.decode(genome.tolist()) == space.decode(genome)


def test_genes_mean_what_the_layout_says() -> None:
    space = SPACES["mobilenet_v3_large"]
    genome = np.full(space.genome_length, -1, dtype=np.int64)
    genome[0], genome[1] = 2, 1  # 224 px, width 1.0
    genome[2 : 2 + len(space.stages)] = 0  # every stage at its smallest depth, 2
    for stage_i in range(len(space.stages)):
        for j in range(2):
            base = space.slot_gene_index(space.stage_slot_offsets[stage_i] + j)
            genome[base : base + 4] = (2, 1, 1, 0)  # kernel 7, expansion 4, SE, ReLU
    spec = space.decode(genome)
    assert spec.resolution == 224
    searchable = spec.blocks[1:]
    assert len(searchable) == 10
    inputs = spec.block_input_channels()[1:]
    for index, (block, channels) in enumerate(zip(searchable, inputs, strict=True)):
        stage = space.stages[index // 2]
        assert block.to_string() == (
            f"ir_k7_s{stage.stride if index % 2 == 0 else 1}_e{make_divisible(channels * 4)}"
            f"_c{stage.out_channels}_se_re"
        )


def test_encode_inverts_decode_for_samples(space: SearchSpace) -> None:
    rng = np.random.default_rng(1)
    for genome in space.sample_population(N, rng):
        assert_canonical(space, genome)
        assert np.array_equal(space.encode(space.decode(genome)), genome)


def test_encode_ignores_the_name(space: SearchSpace) -> None:
    genome = space.sample(np.random.default_rng(2))
    named = space.decode(genome).model_copy(update={"name": "candidate-7"})
    assert np.array_equal(space.encode(named), genome)


# --- mutation and crossover ------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [None, 0.05, 0.5, 1.0])
def test_mutate_returns_a_different_valid_genome(space: SearchSpace, rate: float | None) -> None:
    rng = np.random.default_rng(3)
    parents = space.sample_population(N if rate is None else N // 4, rng)
    for parent in parents:
        kept = parent.copy()
        child = space.mutate(parent, rng, rate)
        assert np.array_equal(parent, kept)  # the parent is not changed in place
        assert not np.array_equal(child, parent)
        assert_canonical(space, child)
        spec = space.decode(child)
        assert spec != space.decode(parent)
        assert np.array_equal(space.encode(spec), child)


def test_default_mutation_changes_few_decisions(space: SearchSpace) -> None:
    rng = np.random.default_rng(4)
    changed = []
    for parent in space.sample_population(N, rng):
        child = space.mutate(parent, rng)
        changed.append(np.count_nonzero(child != parent))
    # About one decision per genome: the median child differs in at most one block slot's genes.
    assert np.median(changed) <= 4


def test_crossover_takes_each_stage_from_one_parent(space: SearchSpace) -> None:
    rng = np.random.default_rng(5)
    firsts, seconds = space.sample_population(N, rng), space.sample_population(N, rng)
    sources = {"first": 0, "second": 0}
    for a, b in zip(firsts, seconds, strict=True):
        child = space.crossover(a, b, rng)
        assert_canonical(space, child)
        assert np.array_equal(space.encode(space.decode(child)), child)
        for index in (0, 1):
            assert child[index] in (a[index], b[index])
        for stage_i in range(len(space.stages)):
            genes = _stage_genes(space, child, stage_i)
            from_a = np.array_equal(genes, _stage_genes(space, a, stage_i))
            from_b = np.array_equal(genes, _stage_genes(space, b, stage_i))
            assert from_a or from_b, stage_i
            sources["first"] += from_a and not from_b
            sources["second"] += from_b and not from_a
        # Everything the child has came from its parents.
        assert np.all((child == a) | (child == b))
    assert sources["first"] > 0 and sources["second"] > 0


def test_crossover_of_a_genome_with_itself_is_the_genome(space: SearchSpace) -> None:
    rng = np.random.default_rng(6)
    genome = space.sample(rng)
    assert np.array_equal(space.crossover(genome, genome, rng), genome)


# --- genome layout ---------------------------------------------------------------------------------


def test_genome_length_is_fixed() -> None:
    assert SPACES["mobilenet_v3_large"].genome_length == 2 + 5 + 4 * (5 * 4)
    assert SPACES["mobilenet_v3_small"].genome_length == 2 + 5 + 4 * (1 + 2 + 4 + 3 + 4)
    for space in SPACES.values():
        rng = np.random.default_rng(7)
        population = space.sample_population(50, rng)
        assert population.shape == (50, space.genome_length)
        for genome in population[:10]:
            assert space.mutate(genome, rng).shape == (space.genome_length,)
            assert space.crossover(genome, population[-1], rng).shape == (space.genome_length,)


def test_stage_layout(space: SearchSpace) -> None:
    offsets = space.stage_slot_offsets
    assert offsets[0] == 0
    for stage_i in range(1, len(space.stages)):
        assert offsets[stage_i] == offsets[stage_i - 1] + space.stages[stage_i - 1].max_depth
    assert space.n_slots == offsets[-1] + space.stages[-1].max_depth
    assert space.slot_gene_index(space.n_slots) == space.genome_length
    assert space.n_options == len(space.kernels) * len(space.expansions) * 2 * len(space.activations)


def test_every_option_decodes_to_a_distinct_block(space: SearchSpace) -> None:
    first, _ = space.slot_shapes(space.resolutions[0], space.widths[0])[1]
    blocks = [space.slot_block(first, option) for option in range(space.n_options)]
    assert len(set(blocks)) == space.n_options
    combos = itertools.product(*(range(limit) for limit in _slot_limits(space)))
    assert [space.option_index(*combo) for combo in combos] == list(range(space.n_options))


def _genome_with(genome: np.ndarray, index: int, value: int) -> np.ndarray:
    changed = genome.copy()
    changed[index] = value
    return changed


def test_decode_rejects_invalid_genomes() -> None:
    space = SPACES["mobilenet_v3_large"]
    genome = space.sample(np.random.default_rng(8))
    genome[2] = 0  # first stage at depth 2: slots 2 and 3 of that stage are unused
    genome[space.slot_gene_index(0) : space.slot_gene_index(2)] = 0
    genome[space.slot_gene_index(2) : space.slot_gene_index(4)] = -1
    space.decode(genome)
    with pytest.raises(ValueError, match="genome must have 87 genes"):
        space.decode(genome[:-1])
    with pytest.raises(ValueError, match="genome must have 87 genes"):
        space.decode(np.stack([genome, genome]))
    with pytest.raises(ValueError, match="gene 0 out of range 0..2: 3"):
        space.decode(_genome_with(genome, 0, 3))
    with pytest.raises(ValueError, match="gene 1 out of range"):
        space.decode(_genome_with(genome, 1, -1))
    with pytest.raises(ValueError, match="gene 2 out of range"):
        space.decode(_genome_with(genome, 2, 3))
    active, unused = space.slot_gene_index(1), space.slot_gene_index(2)
    with pytest.raises(ValueError, match=f"gene {active} .*stage 0, block 1.* invalid: -1"):
        space.decode(_genome_with(genome, active, -1))
    with pytest.raises(ValueError, match=f"gene {active} .* invalid: 3"):
        space.decode(_genome_with(genome, active, 3))
    with pytest.raises(ValueError, match=f"gene {unused + 2} .*stage 0, block 2.* invalid: 0"):
        space.decode(_genome_with(genome, unused + 2, 0))


# --- size ------------------------------------------------------------------------------------------


def _all_gene_vectors(space: SearchSpace):
    """Every vector whose genes are the unused marker or any in-range choice for their position."""
    limits = [len(space.resolutions), len(space.widths), *(len(s.depths) for s in space.stages)]
    limits += list(_slot_limits(space)) * space.n_slots
    return itertools.product(*(range(-1, limit) for limit in limits))


def test_size_matches_brute_force_over_all_genomes() -> None:
    space = one_stage_space()
    members = {}
    tried = 0
    for vector in _all_gene_vectors(space):
        tried += 1
        try:
            spec = space.decode(vector)
        except ValueError:
            continue
        members[spec.content_hash()] = (np.asarray(vector), spec)
    assert tried == 2 * 2 * 3 * (3 * 2 * 2 * 2) ** 2
    assert space.size() == len(members) == 2 + 2 * 2
    for genome, spec in members.values():
        assert np.array_equal(space.encode(spec), genome)


def _enumerate_members(space: SearchSpace):
    """Every canonical genome, built stage by stage."""
    limits = _slot_limits(space)
    options = list(itertools.product(*(range(limit) for limit in limits)))
    per_stage = []
    for stage in space.stages:
        choices = []
        for depth_i, depth in enumerate(stage.depths):
            for slots in itertools.product(options, repeat=depth):
                genes = [depth_i, *itertools.chain(*slots), *[-1] * (4 * (stage.max_depth - depth))]
                choices.append(genes)
        per_stage.append(choices)
    for r_i, w_i in itertools.product(range(len(space.resolutions)), range(len(space.widths))):
        for stages in itertools.product(*per_stage):
            genome = [r_i, w_i, *(s[0] for s in stages), *itertools.chain(*(s[1:] for s in stages))]
            yield np.asarray(genome, dtype=np.int64)


def test_size_counts_distinct_networks() -> None:
    space = small_space()
    hashes = set()
    count = 0
    for genome in _enumerate_members(space):
        hashes.add(space.decode(genome).content_hash())
        count += 1
    assert space.size() == count == len(hashes) == 2 * 2 * (4 + 4**2) ** 2


def test_size_of_the_registered_spaces() -> None:
    # 3 kernels x 3 expansions x SE on/off x 2 activations = 36 choices per block.
    assert SPACES["mobilenet_v3_large"].size() == 3 * 3 * (36**2 + 36**3 + 36**4) ** 5
    assert SPACES["mobilenet_v3_small"].size() == 3 * 3 * (
        36 * (36 + 36**2) * (36**2 + 36**3 + 36**4) * (36 + 36**2 + 36**3) * (36**2 + 36**3 + 36**4)
    )
    assert SPACES["mobilenet_v3_large"].with_options(resolutions=[32], widths=[1.0]).size() == (
        SPACES["mobilenet_v3_large"].size() // 9
    )


# --- lookup-table keys -----------------------------------------------------------------------------


def test_block_keys_are_sorted_unique_and_parse(space: SearchSpace) -> None:
    keys = space.block_keys()
    assert keys == sorted(set(keys))
    for key in keys:
        assert str(LayerKey.parse(key)) == key


def test_block_keys_cover_every_sampled_network(space: SearchSpace) -> None:
    keys = set(space.block_keys())
    rng = np.random.default_rng(9)
    for genome in space.sample_population(N, rng):
        assert set(space.decode(genome).block_keys()) <= keys


def test_block_keys_are_exactly_the_reachable_keys() -> None:
    """Brute force on a small space: no key is missing and none is unreachable."""
    space = small_space()
    reachable: set[str] = set()
    for genome in _enumerate_members(space):
        reachable.update(space.decode(genome).block_keys())
    assert set(space.block_keys()) == reachable


def test_slot_keys_follow_the_genome_layout(space: SearchSpace) -> None:
    """slot_keys_at[slot][option] is the key of the block that option puts in that slot."""
    rng = np.random.default_rng(16)
    fixed = len(space.fixed_blocks)
    for genome in space.sample_population(20, rng):
        resolution, width = space.resolutions[genome[0]], space.widths[genome[1]]
        slot_keys = space.slot_keys_at(resolution, width)
        assert len(slot_keys) == space.n_slots
        assert all(len(keys) == space.n_options for keys in slot_keys)
        spec_keys = space.decode(genome).block_keys()
        expected = []
        for stage_i, stage in enumerate(space.stages):
            for j in range(stage.depths[genome[2 + stage_i]]):
                slot = space.stage_slot_offsets[stage_i] + j
                base = space.slot_gene_index(slot)
                expected.append(slot_keys[slot][space.option_index(*genome[base : base + 4])])
        assert spec_keys[1 + fixed : -1] == expected
        fixed_keys = space.fixed_keys_at(resolution, width)
        assert fixed_keys == spec_keys[: 1 + fixed] + spec_keys[-1:]
        assert set(space.layer_keys_at(resolution, width)) >= set(spec_keys)


# --- membership ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", reference_names())
def test_reference_networks_are_not_members(space: SearchSpace, name: str) -> None:
    with pytest.raises(ValueError, match=f"architecture is not in space {space.name}"):
        space.encode(reference_spec(name, 1.0, 224))


def _blocks_replaced(spec: ArchSpec, blocks: list[BlockSpec]) -> ArchSpec:
    return ArchSpec.model_validate({**spec.model_dump(), "blocks": [b.model_dump() for b in blocks]})


def test_encode_rejects_non_members() -> None:
    space = SPACES["mobilenet_v3_large"]
    genome = space.sample(np.random.default_rng(10))
    genome[2 : 2 + len(space.stages)] = 2  # every stage at its largest depth, 4
    genome[genome == -1] = 0
    spec = space.decode(genome)
    blocks = list(spec.blocks)
    with pytest.raises(ValueError, match="resolution 96 not in"):
        space.encode(spec.model_copy(update={"resolution": 96}))
    with pytest.raises(ValueError, match="is not a choice of this space"):
        odd = blocks[3].model_copy(update={"kernel": 9})
        space.encode(_blocks_replaced(spec, blocks[:3] + [odd] + blocks[4:]))
    with pytest.raises(ValueError, match="left over after the last stage"):
        space.encode(_blocks_replaced(spec, blocks + [blocks[-1].model_copy(update={"stride": 1})]))
    with pytest.raises(ValueError, match="fixed blocks differ"):
        space.encode(_blocks_replaced(spec, [blocks[0].model_copy(update={"kernel": 5})] + blocks[1:]))
    with pytest.raises(ValueError, match="stem or head differ"):
        space.encode(spec.with_num_classes(10))
    with pytest.raises(ValueError, match="input has 1 channels"):
        space.encode(ArchSpec.model_validate({**spec.model_dump(), "in_channels": 1}))


def test_encode_rejects_a_stage_that_is_too_shallow() -> None:
    space = SPACES["mobilenet_v3_large"]
    genome = space.sample(np.random.default_rng(11))
    genome[2] = 0  # first stage at depth 2
    genome[space.slot_gene_index(0) : space.slot_gene_index(2)] = 0
    genome[space.slot_gene_index(2) : space.slot_gene_index(4)] = -1
    spec = space.decode(genome)
    blocks = list(spec.blocks)
    with pytest.raises(ValueError, match=r"stage 0 has depth 1, allowed \(2, 3, 4\)"):
        space.encode(_blocks_replaced(spec, blocks[:2] + blocks[3:]))


# --- options and sampling --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"resolutions": []}, "resolutions must be within 16-1024"),
        ({"resolutions": [8]}, "resolutions must be within 16-1024"),
        ({"resolutions": [32, 2048]}, "resolutions must be within 16-1024"),
        ({"widths": []}, "width multipliers must be within 0.25-2.0"),
        ({"widths": [0.1]}, "width multipliers must be within 0.25-2.0"),
        ({"widths": [1.0, 3.0]}, "width multipliers must be within 0.25-2.0"),
        ({"num_classes": 1}, "num_classes must be at least 2"),
    ],
)
def test_with_options_validation(space: SearchSpace, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        space.with_options(**options)


def test_widths_that_merge_two_stages_are_rejected() -> None:
    # At width 0.5 MobileNetV3-Small's stride-1 stage (48) rounds to its predecessor's width (40 -> 24):
    # the stage boundary would vanish and two genomes would decode to one network.
    with pytest.raises(ValueError, match="stride-1 stage 3 is as wide as stage 2"):
        SPACES["mobilenet_v3_small"].with_options(widths=[0.5])
    merged = one_stage_space(stages=(StageChoices(24, 2, (1,)), StageChoices(32, 1, (1, 2))))
    merged.with_options(widths=[1.0])
    with pytest.raises(ValueError, match="stride-1 stage 1 is as wide as stage 0 .24 channels"):
        merged.with_options(widths=[1.0, 0.75])  # 32 * 0.75 rounds to 24
    # The same widths with a stride-2 boundary are unambiguous.
    strided = one_stage_space(stages=(StageChoices(24, 2, (1,)), StageChoices(32, 2, (1, 2))))
    assert strided.with_options(widths=[0.75]).size() == 2 * 6


def test_with_options_changes_only_what_it_is_given(space: SearchSpace) -> None:
    changed = space.with_options(resolutions=[32, 64.0], widths=[1], num_classes=10)
    assert (changed.resolutions, changed.widths, changed.num_classes) == ((32, 64), (1.0,), 10)
    assert changed.stages == space.stages and changed.kernels == space.kernels
    assert space.resolutions == (160, 192, 224) and space.num_classes == 1000  # original untouched
    spec = changed.decode(changed.sample(np.random.default_rng(12)))
    assert spec.resolution in (32, 64) and spec.head.num_classes == 10
    assert space.with_options() == space


def test_sample_population_shape_and_determinism(space: SearchSpace) -> None:
    population = space.sample_population(64, np.random.default_rng(13))
    assert population.shape == (64, space.genome_length) and population.dtype == np.int64
    assert np.array_equal(population, space.sample_population(64, np.random.default_rng(13)))
    assert not np.array_equal(population, space.sample_population(64, np.random.default_rng(14)))
    assert space.sample_population(0, np.random.default_rng(13)).shape == (0, space.genome_length)
    single = space.sample(np.random.default_rng(13))
    assert np.array_equal(single, space.sample_population(1, np.random.default_rng(13))[0])
    assert_canonical(space, single)
    # Every choice shows up: resolutions, widths and each stage's depths.
    assert set(population[:, 0]) == set(range(len(space.resolutions)))
    assert set(population[:, 1]) == set(range(len(space.widths)))
    for stage_i, stage in enumerate(space.stages):
        assert set(population[:, 2 + stage_i]) == set(range(len(stage.depths)))


def test_a_leaning_draw_reaches_the_cheapest_and_the_dearest_network(space: SearchSpace) -> None:
    """lean 0: every choice its first option (smallest width, fewest blocks, kernel 3, ...); lean 1:
    every choice its last; each genome valid. Out-of-range or misshapen shares are refused."""
    from search_spaces.counting import count_spec

    rng = np.random.default_rng(3)
    low, middle, high = space.sample_population(3, rng, lean=np.array([0.0, 0.5, 1.0]))
    for genome in (low, middle, high):
        assert_canonical(space, genome)
    cheapest, dearest = space.decode(low), space.decode(high)
    assert len(cheapest.blocks) == len(space.fixed_block_specs(space.widths[0])) + sum(
        min(stage.depths) for stage in space.stages
    )
    assert all(block.kernel == min(space.kernels) for block in cheapest.blocks[-1:])
    assert count_spec(cheapest).madds < count_spec(space.decode(middle)).madds < count_spec(dearest).madds
    uniform = [count_spec(space.decode(g)).madds for g in space.sample_population(32, np.random.default_rng(4))]
    assert count_spec(cheapest).madds <= min(uniform) and count_spec(dearest).madds >= max(uniform)
    for bad in (np.array([0.5, 1.2, 0.0]), np.array([0.5, 0.5])):
        with pytest.raises(ValueError, match="lean"):
            space.sample_population(3, rng, lean=bad)


def test_mutation_and_crossover_are_deterministic_under_a_seed(space: SearchSpace) -> None:
    parents = space.sample_population(20, np.random.default_rng(15))

    def offspring(seed: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        return [space.mutate(p, rng) for p in parents] + [
            space.crossover(a, b, rng) for a, b in zip(parents, parents[::-1], strict=True)
        ]

    assert all(np.array_equal(x, y) for x, y in zip(offspring(1), offspring(1), strict=True))


def test_describe(space: SearchSpace) -> None:
    description = space.describe()
    assert description["name"] == space.name
    assert description["num_architectures"] == space.size()
    assert description["num_block_keys"] == len(space.block_keys())
    assert description["genome_length"] == space.genome_length
    assert [s["out_channels"] for s in description["stages"]] == [s.out_channels for s in space.stages]
    assert json.loads(json.dumps(description)) == description


def test_get_space() -> None:
    for name in SPACES:
        assert get_space(name) is SPACES[name]
    with pytest.raises(KeyError, match="unknown search space 'mobilenet_v9'"):
        get_space("mobilenet_v9")
