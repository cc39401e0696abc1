"""The weight-sharing supernet: members run in place equal their extracted networks, weights are
really shared, training lifts every member above chance, and a stored supernet proves what it is."""

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from nas.evaluation import ArrayData
from nas.evaluation.training import evaluate_accuracy, recalibrate_batchnorm
from nas.supernet import (
    InheritedEvaluator,
    SuperNet,
    SupernetFileError,
    SupernetRecipe,
    UnsupportedSpaceError,
    calibrated_network,
    calibration_subset,
    inherited_accuracy,
    load_supernet,
    save_supernet,
    train_supernet,
    weight_sharing_problem,
)
from search_spaces.arch_spec import BlockSpec
from search_spaces.builder import build_model
from search_spaces.space import SPACES, SearchSpace, SlotShape, StageChoices, get_space, tiny_space


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def varied_space(resolution: int = 16, num_classes: int = 4) -> SearchSpace:
    """Small, but with every kind of choice: two widths, a fixed ds block, both activations, SE, 3 kernels."""
    return SearchSpace(
        name="varied",
        description="test space",
        stem_channels=16,
        fixed_blocks=("ds_k3_s1_e8_c8_re",),
        stages=(StageChoices(16, 2, (1, 2)), StageChoices(24, 2, (1, 2))),
        head_hidden_channels=32,
        kernels=(3, 5, 7),
        expansions=(3, 6),
        activations=("relu", "hswish"),
        widths=(0.5, 1.0),
        resolutions=(resolution,),
        num_classes=num_classes,
    )


def synthetic(n_train: int = 240, n_val: int = 96, num_classes: int = 4, size: int = 16, seed: int = 0) -> ArrayData:
    """A coarse per-class pattern plus unit noise: learnable in a few epochs, never trivially."""
    rng = np.random.default_rng(seed)
    prototypes = np.kron(rng.normal(0.0, 1.0, (num_classes, 3, 4, 4)), np.ones((1, 1, size // 4, size // 4)))

    def draw(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.arange(count, dtype=np.int64) % num_classes)
        return (prototypes[labels] + rng.normal(0.0, 1.0, (count, 3, size, size))).astype(np.float32), labels

    x_train, y_train = draw(n_train)
    x_val, y_val = draw(n_val)
    return ArrayData(x_train, y_train, x_val, y_val, num_classes=num_classes, in_channels=3)


def randomised(supernet: SuperNet, seed: int = 0) -> SuperNet:
    """Every BatchNorm statistic and scale moved off its initial value, so slicing mistakes show."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in supernet.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.5, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.2, generator=generator)
        for name, parameter in supernet.named_parameters():
            if "transforms" in name or parameter.ndim == 2:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return supernet.eval()


@pytest.mark.parametrize("kernel_transform", [False, True])
def test_extracted_network_equals_the_member_run_in_place(kernel_transform: bool) -> None:
    space = varied_space()
    torch.manual_seed(0)
    supernet = randomised(SuperNet(space, kernel_transform=kernel_transform))
    rng = np.random.default_rng(0)
    genomes = [supernet.largest_genome(rng), supernet.smallest_genome(rng), *space.sample_population(12, rng)]
    x = torch.randn(6, 3, 16, 16)
    for genome in genomes:
        spec = supernet.set_active(genome)
        with torch.inference_mode():
            in_place = supernet(x)
            extracted = supernet.extract(spec).eval()(x)
        assert extracted.shape == (6, space.num_classes)
        torch.testing.assert_close(in_place, extracted, rtol=1e-4, atol=1e-5)
        # The spec addresses the same member as its genome.
        np.testing.assert_array_equal(supernet.genome_of(spec), genome)


def test_member_runs_at_any_resolution_and_extraction_keeps_the_spec() -> None:
    space = get_space("mobilenet_v3_small").with_options(resolutions=[128], num_classes=10)
    supernet = randomised(SuperNet(space))
    spec = space.decode(space.sample(np.random.default_rng(1))).with_resolution(32)  # the search's proxy size
    supernet.set_active(spec)
    network = supernet.extract(spec).eval()
    assert network.spec == spec
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(supernet(x), network(x), rtol=1e-4, atol=1e-5)


def test_largest_member_has_the_parameters_of_the_built_largest_spec() -> None:
    space = get_space("mobilenet_v3_small").with_options(resolutions=[32], num_classes=10)
    supernet = SuperNet(space)
    largest = space.decode(supernet.largest_genome())
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(supernet.extract(largest)) == count(build_model(largest))
    # With no fixed blocks and no kernel transform, the supernet is exactly its largest member.
    assert count(supernet) == count(build_model(largest))
    smallest = space.decode(supernet.smallest_genome())
    assert count(build_model(smallest)) < count(build_model(largest)) / 3


def test_a_step_on_one_member_changes_the_slice_another_shares() -> None:
    space = varied_space()
    torch.manual_seed(0)
    supernet = SuperNet(space)
    small, large = supernet.smallest_genome(), supernet.largest_genome()
    small_spec, large_spec = space.decode(small), space.decode(large)
    before = supernet.extract(large).state_dict()
    optimizer = torch.optim.SGD(supernet.parameters(), lr=0.5)
    supernet.train()
    supernet.set_active(small)
    torch.nn.functional.cross_entropy(supernet(torch.randn(8, 3, 16, 16)), torch.arange(8) % 4).backward()
    optimizer.step()
    after = supernet.extract(large).state_dict()

    stem_small = small_spec.stem.out_channels
    assert stem_small < large_spec.stem.out_channels
    changed = (after["stem.0.weight"] - before["stem.0.weight"]).abs().sum(dim=(1, 2, 3))
    assert bool((changed[:stem_small] > 0).all()), "the smallest member's stem channels are the largest's first"
    assert bool((changed[stem_small:] == 0).all()), "channels outside the smallest member are untouched"
    # The smallest member's 3x3 depthwise kernel is the centre of the largest's 7x7.
    name = "blocks.1.depthwise.0.weight"  # first searched slot (after the fixed block)
    delta = (after[name] - before[name]).abs().sum(dim=(0, 1))
    outside = delta.clone()
    outside[2:5, 2:5] = 0.0
    assert bool((delta[2:5, 2:5] > 0).all()) and bool((outside == 0).all())


def test_inherited_accuracy_is_the_extracted_network_after_precise_batchnorm() -> None:
    space = varied_space()
    data = synthetic()
    torch.manual_seed(0)
    supernet = randomised(SuperNet(space))
    genome = space.sample(np.random.default_rng(3))
    accuracy = inherited_accuracy(supernet, genome, data, calibration_images=64, seed=5)

    network = supernet.extract(genome)
    images = torch.as_tensor(data.x_train[calibration_subset(data, 64, 5)])
    recalibrate_batchnorm(network, images, batch_size=64, resolution=None)
    assert accuracy == evaluate_accuracy(network, data.x_val, data.y_val, resolution=None)
    assert evaluate_accuracy(calibrated_network(supernet, genome, data, calibration_images=64, seed=5),
                             data.x_val, data.y_val, resolution=None) == accuracy  # fmt: skip


def test_sandwich_training_lifts_members_above_chance_and_reports_every_epoch() -> None:
    space = tiny_space(resolution=16, num_classes=4)
    data = synthetic()
    seen: list[tuple[int, dict[str, float]]] = []
    recipe = SupernetRecipe(epochs=4, batch_size=32, lr=1e-2, seed=0)
    result = train_supernet(space, data, recipe, on_epoch=lambda epoch, metrics: seen.append((epoch, metrics)))
    assert [epoch for epoch, _ in seen] == [1, 2, 3, 4]
    assert set(seen[0][1]) == {"train_loss", "largest_accuracy", "smallest_accuracy", "seconds"}
    assert not result.diverged and result.epochs_run == 4 and result.resolution == 16
    genomes = space.sample_population(6, np.random.default_rng(1))
    accuracies = InheritedEvaluator(result.supernet, data).accuracies(genomes)
    torch.manual_seed(0)
    untrained = InheritedEvaluator(SuperNet(space), data).accuracies(genomes)
    assert accuracies.min() > 0.5, accuracies  # chance is 0.25
    assert accuracies.mean() > untrained.mean() + 0.2, (accuracies, untrained)
    assert result.epoch_metrics[-1]["smallest_accuracy"] > 0.5


def test_training_is_seeded_and_stops_when_the_callback_says_so() -> None:
    space = tiny_space(resolution=16, num_classes=4)
    data = synthetic(n_train=96, n_val=32)
    recipe = SupernetRecipe(epochs=3, batch_size=32, random_subnets=1, seed=7)
    first = train_supernet(space, data, recipe, on_epoch=lambda epoch, metrics: epoch >= 1)
    second = train_supernet(space, data, recipe, on_epoch=lambda epoch, metrics: True)
    assert first.stopped_early and first.epochs_run == 1
    for (name, a), b in zip(first.supernet.state_dict().items(), second.supernet.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_training_augments_the_batches_when_the_recipe_asks() -> None:
    space = tiny_space(resolution=16, num_classes=4)
    data = synthetic(n_train=64, n_val=32)
    recipe = SupernetRecipe(epochs=1, batch_size=32, random_subnets=0, seed=7, min_epoch_images=128)
    plain = train_supernet(space, data, recipe)
    auto = train_supernet(space, data, recipe.model_copy(update={"augment": "auto"}))  # 64 < 128: shifts
    assert auto.epoch_metrics[0]["train_loss"] != plain.epoch_metrics[0]["train_loss"]
    assert auto.recipe.augment == "auto" and auto.metadata()["recipe"]["augment"] == "auto"


def test_training_refuses_data_the_space_does_not_fit() -> None:
    space = tiny_space(resolution=16, num_classes=4)
    with pytest.raises(ValueError, match="classes"):
        train_supernet(space, synthetic(num_classes=3), SupernetRecipe(epochs=1))


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    space = varied_space()
    torch.manual_seed(0)
    supernet = randomised(SuperNet(space, kernel_transform=True))
    path = tmp_path / "supernets" / "digits.pt"
    save_supernet(path, supernet, {"dataset": "digits", "resolution": 16})
    loaded, metadata = load_supernet(path, space.with_options(resolutions=[32]))  # resolutions do not shape weights
    assert metadata == {"dataset": "digits", "resolution": 16}
    assert loaded.kernel_transform and not loaded.training
    genome = space.sample(np.random.default_rng(2))
    x = torch.randn(4, 3, 16, 16)
    supernet.set_active(genome)
    loaded.set_active(genome)
    with torch.inference_mode():
        torch.testing.assert_close(supernet(x), loaded(x), rtol=0, atol=0)
    assert [p.name for p in path.parent.iterdir()] == ["digits.pt"]  # no partial file left behind


def test_a_damaged_missing_or_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    space = tiny_space(resolution=16, num_classes=4)
    path = tmp_path / "supernet.pt"
    save_supernet(path, SuperNet(space), {})
    data = path.read_bytes()

    with pytest.raises(SupernetFileError, match="no supernet file"):
        load_supernet(tmp_path / "absent.pt", space)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SupernetFileError, match="not a readable supernet"):
        load_supernet(path, space)
    # Flip bytes inside the largest tensor's data: the zip still opens, the checksum does not match.
    damaged = bytearray(data)
    middle = len(damaged) // 2
    damaged[middle : middle + 16] = bytes(255 - b for b in damaged[middle : middle + 16])
    path.write_bytes(bytes(damaged))
    with pytest.raises(SupernetFileError):
        load_supernet(path, space)
    path.write_bytes(data)
    with pytest.raises(SupernetFileError, match="another space.*num_classes"):
        load_supernet(path, space.with_options(num_classes=5))
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(SupernetFileError, match="not a supernet file"):
        load_supernet(path, space)


def test_a_spec_outside_the_space_is_refused() -> None:
    space = tiny_space(resolution=16, num_classes=4)
    supernet = SuperNet(space)
    spec = space.decode(space.sample(np.random.default_rng(0)))
    foreign = spec.model_copy(update={"blocks": (*spec.blocks[:-1], BlockSpec.from_string("ir_k7_s2_e72_c24_re"))})
    with pytest.raises(ValueError, match="cannot run this architecture"):
        supernet.set_active(foreign)
    with pytest.raises(ValueError, match="cannot run this architecture"):
        supernet.extract(spec.model_copy(update={"in_channels": 1}))
    with pytest.raises(RuntimeError, match="set_active"):
        SuperNet(space)(torch.zeros(2, 3, 16, 16))


class _DepthwiseSeparableSlots(SearchSpace):
    """A space whose searched slots are MobileNetV1 blocks: not something the supernet can host."""

    def slot_block(self, shape: SlotShape, option: int) -> BlockSpec:
        block = super().slot_block(shape, option)
        return block.model_copy(update={"kind": "ds", "se": False, "mid_channels": shape.in_channels})


def test_spaces_that_cannot_share_weights_say_why() -> None:
    for space in SPACES.values():
        assert weight_sharing_problem(space) is None, space.name
    assert weight_sharing_problem(tiny_space()) is None

    even = replace(tiny_space(), kernels=(3, 4))
    assert "even" in weight_sharing_problem(even)
    with pytest.raises(UnsupportedSpaceError, match="even"):
        SuperNet(even)
    tiny = tiny_space()
    ds = _DepthwiseSeparableSlots(**{name: getattr(tiny, name) for name in tiny.__dataclass_fields__})
    assert "must be 'ir'" in weight_sharing_problem(ds)
