import pytest
import torch

from nas.evaluation import train_and_evaluate
from nas.evaluation.augmentation import MAX_SHIFT, MAX_ZOOM, BatchAugmenter, resolve_augment


def _spots(n: int, size: int = 32) -> torch.Tensor:
    """n copies of one image: a bright 4x4 spot left of centre on a black background (NCHW, 3 channels)."""
    images = torch.zeros(n, 3, size, size)
    images[:, :, 14:18, 6:10] = 1.0
    return images


def _centre_x(images: torch.Tensor) -> torch.Tensor:
    """Horizontal centre of brightness of each image, in pixels."""
    weights = images[:, 0].sum(dim=1)  # N x W
    columns = torch.arange(images.shape[-1], dtype=images.dtype) + 0.5
    return (weights * columns).sum(dim=1) / weights.sum(dim=1)


@pytest.mark.parametrize(
    ("mode", "n_train", "min_epoch_images", "expected"),
    [
        ("auto", 168, 1024, "shift"),  # the outsider's 280 shapes: images repeat within an epoch
        ("auto", 1024, 1024, "none"),
        ("auto", 1078, 1024, "none"),  # digits
        ("auto", 40, None, "none"),  # no epoch floor (smoke): nothing repeats
        ("none", 10, 1024, "none"),
        ("shift", 5000, 1024, "shift"),
        ("shift_flip", 5000, None, "shift_flip"),
    ],
)
def test_auto_augments_exactly_when_images_repeat_within_an_epoch(mode, n_train, min_epoch_images, expected):
    assert resolve_augment(mode, n_train, min_epoch_images) == expected


def test_none_returns_the_batch_itself():
    images = _spots(4)
    assert BatchAugmenter("none", seed=0)(images) is images


def test_shifts_stay_within_their_bounds_and_vary_between_images():
    images = _spots(256)
    moved = BatchAugmenter("shift", seed=0)(images)
    assert moved.shape == images.shape
    shift = _centre_x(moved) - _centre_x(images)
    # The spot's centre is 8 px left of the image's centre: a zoom moves it by up to 10% of that.
    bound = MAX_SHIFT * 32 + MAX_ZOOM * 8 + 0.5
    assert shift.abs().max() <= bound
    assert shift.abs().max() > 0.6 * MAX_SHIFT * 32  # the whole range is used...
    assert shift.std() > 1.0  # ...and images move differently
    assert (moved.amax(dim=(1, 2, 3)) > 0.5).all()  # the spot is never pushed out of the image


def test_shift_flip_mirrors_about_half_the_images_and_shift_never_does():
    images = _spots(400)  # the spot sits at x = 8 of 32: mirrored it lands near x = 24
    mirrored = _centre_x(BatchAugmenter("shift_flip", seed=0)(images)) > 16
    assert 0.4 < mirrored.float().mean() < 0.6
    assert not (_centre_x(BatchAugmenter("shift", seed=0)(images)) > 16).any()


def test_the_same_seed_gives_the_same_batches_and_another_seed_others():
    images = _spots(8)
    first, second, other = BatchAugmenter("shift", 3), BatchAugmenter("shift", 3), BatchAugmenter("shift", 4)
    a1, a2 = first(images), first(images)
    assert torch.equal(a1, second(images)) and torch.equal(a2, second(images))
    assert not torch.equal(a1, a2)  # the generator moves on between batches
    assert not torch.equal(a1, other(images))


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown augmentation"):
        BatchAugmenter("rotate", seed=0)  # type: ignore[arg-type]


def test_training_augments_a_tiny_train_part_and_leaves_a_large_one_alone(tiny_spec, data_factory, quick_recipe):
    tiny = data_factory(n_train=40, n_val=40, seed=3)
    recipe = quick_recipe.model_copy(update={"epochs": 1, "min_epoch_images": 128})
    plain = train_and_evaluate(tiny_spec, tiny, recipe)
    auto = train_and_evaluate(tiny_spec, tiny, recipe.model_copy(update={"augment": "auto"}))
    shifted = train_and_evaluate(tiny_spec, tiny, recipe.model_copy(update={"augment": "shift"}))
    assert auto.epoch_train_losses == shifted.epoch_train_losses != plain.epoch_train_losses
    # 40 images against an epoch of 40: nothing repeats, so auto trains exactly as without augmentation.
    large_enough = recipe.model_copy(update={"min_epoch_images": 40})
    assert (
        train_and_evaluate(tiny_spec, tiny, large_enough.model_copy(update={"augment": "auto"})).epoch_train_losses
        == train_and_evaluate(tiny_spec, tiny, large_enough).epoch_train_losses
    )
