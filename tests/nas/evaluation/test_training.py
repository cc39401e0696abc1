import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from nas.evaluation import ArrayData, TrainingRecipe, evaluate_accuracy, fine_tune, spec_for_data, train_and_evaluate
from nas.evaluation.training import recalibrate_batchnorm
from search_spaces.builder import build_model


def test_training_learns_the_synthetic_classes(tiny_spec, synthetic_data, quick_recipe):
    result = train_and_evaluate(tiny_spec, synthetic_data, quick_recipe)

    assert result.final_accuracy > 0.6  # chance is 0.25
    assert result.epochs_run == 3 and len(result.epoch_accuracies) == 3 and len(result.epoch_train_losses) == 3
    assert result.final_accuracy == result.epoch_accuracies[-1]
    assert result.best_accuracy == max(result.epoch_accuracies)
    assert result.best_epoch in (1, 2, 3)
    assert result.epoch_train_losses[-1] < result.epoch_train_losses[0]
    assert not result.stopped_early and not result.diverged
    assert result.train_seconds > 0
    assert not result.model.training


def test_same_seed_gives_identical_runs(tiny_spec, synthetic_data, quick_recipe):
    first = train_and_evaluate(tiny_spec, synthetic_data, quick_recipe)
    second = train_and_evaluate(tiny_spec, synthetic_data, quick_recipe)

    assert first.epoch_accuracies == second.epoch_accuracies
    assert first.epoch_train_losses == second.epoch_train_losses
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name


def test_another_seed_gives_another_run(tiny_spec, synthetic_data, quick_recipe):
    first = train_and_evaluate(tiny_spec, synthetic_data, quick_recipe)
    other = train_and_evaluate(tiny_spec, synthetic_data, quick_recipe.model_copy(update={"seed": 1}))

    assert first.epoch_train_losses != other.epoch_train_losses


def test_training_leaves_the_global_rng_alone(tiny_spec, synthetic_data, quick_recipe):
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    train_and_evaluate(tiny_spec, synthetic_data, quick_recipe.model_copy(update={"epochs": 1}))
    assert torch.equal(torch.get_rng_state(), before)


def test_on_epoch_sees_every_epoch_and_can_stop_the_run(tiny_spec, synthetic_data, quick_recipe):
    calls = []
    full = train_and_evaluate(tiny_spec, synthetic_data, quick_recipe, on_epoch=lambda *args: calls.append(args))
    assert [call[0] for call in calls] == [1, 2, 3]
    assert [call[1] for call in calls] == full.epoch_accuracies
    assert [call[2] for call in calls] == full.epoch_train_losses

    stopped = train_and_evaluate(tiny_spec, synthetic_data, quick_recipe, on_epoch=lambda epoch, acc, loss: True)
    assert stopped.epochs_run == 1 and stopped.stopped_early
    assert stopped.epoch_accuracies == full.epoch_accuracies[:1]  # the stop changes nothing before it


def test_stop_request_on_the_last_epoch_is_not_an_early_stop(tiny_spec, synthetic_data, quick_recipe):
    recipe = quick_recipe.model_copy(update={"epochs": 1})
    result = train_and_evaluate(tiny_spec, synthetic_data, recipe, on_epoch=lambda *_: True)
    assert result.epochs_run == 1 and not result.stopped_early


@pytest.mark.parametrize(("change", "message"), [({"num_classes": 5}, "classes"), ({"in_channels": 1}, "channel")])
def test_a_network_that_does_not_fit_the_data_is_refused(spec_factory, synthetic_data, quick_recipe, change, message):
    with pytest.raises(ValueError, match=message):
        train_and_evaluate(spec_factory(**change), synthetic_data, quick_recipe)


def test_spec_for_data_adapts_channels_and_classes(tiny_spec, data_factory):
    gray = data_factory(num_classes=3, channels=1, n_train=12, n_val=6)
    adapted = spec_for_data(tiny_spec, gray)
    assert adapted.in_channels == 1 and adapted.head.num_classes == 3
    assert adapted.blocks == tiny_spec.blocks


def test_a_diverging_run_is_reported_not_raised(tiny_spec, synthetic_data, quick_recipe):
    result = train_and_evaluate(tiny_spec, synthetic_data, quick_recipe.model_copy(update={"lr": 1e6}))

    assert result.diverged
    assert result.final_accuracy == 0.0 and result.best_accuracy == 0.0
    assert result.epoch_accuracies[-1] == 0.0 and math.isnan(result.epoch_train_losses[-1])
    assert result.epochs_run == len(result.epoch_accuracies) <= 3


def test_fine_tune_keeps_or_improves_a_partly_trained_network(tiny_spec, synthetic_data, quick_recipe):
    partial = train_and_evaluate(tiny_spec, synthetic_data, quick_recipe.model_copy(update={"epochs": 1, "lr": 0.02}))
    tuned = fine_tune(partial.model, synthetic_data, quick_recipe.model_copy(update={"epochs": 2, "lr": 0.05}))

    assert tuned.model is partial.model
    assert tuned.epochs_run == 2
    assert tuned.final_accuracy >= partial.final_accuracy
    assert tuned.final_accuracy > 0.6


def test_fine_tune_checks_the_spec_a_built_network_carries(tiny_spec, data_factory, quick_recipe):
    five_classes = data_factory(num_classes=5, n_train=20, n_val=10)
    with pytest.raises(ValueError, match="classes"):
        fine_tune(build_model(tiny_spec), five_classes, quick_recipe)


def test_fine_tune_trains_a_plain_module_at_the_data_resolution(synthetic_data, quick_recipe):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    result = fine_tune(model, synthetic_data, quick_recipe.model_copy(update={"epochs": 1}))
    assert result.epochs_run == 1 and 0.0 <= result.final_accuracy <= 1.0

    wrong = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 7))
    with pytest.raises(ValueError, match="logits"):
        fine_tune(wrong, synthetic_data, quick_recipe)


def test_images_are_resized_to_the_spec_resolution(spec_factory, data_factory, quick_recipe):
    small = data_factory(size=12, n_train=64, n_val=16)  # the network expects 16 px
    result = train_and_evaluate(spec_factory(), small, quick_recipe.model_copy(update={"epochs": 1}))
    assert result.epochs_run == 1


def test_max_train_images_trains_on_a_seeded_subset(tiny_spec, synthetic_data, quick_recipe):
    recipe = quick_recipe.model_copy(update={"epochs": 1, "max_train_images": 64})
    first = train_and_evaluate(tiny_spec, synthetic_data, recipe)
    second = train_and_evaluate(tiny_spec, synthetic_data, recipe)
    full = train_and_evaluate(tiny_spec, synthetic_data, quick_recipe.model_copy(update={"epochs": 1}))
    assert first.epoch_train_losses == second.epoch_train_losses != full.epoch_train_losses


def test_adamw_and_warmup_run(tiny_spec, synthetic_data):
    recipe = TrainingRecipe(epochs=2, batch_size=32, optimizer="adamw", lr=3e-3, weight_decay=0.01, warmup_epochs=1)
    result = train_and_evaluate(tiny_spec, synthetic_data, recipe)
    assert result.epochs_run == 2 and not result.diverged


def test_the_trained_weights_load_into_a_fresh_network(tiny_spec, synthetic_data, quick_recipe):
    result = train_and_evaluate(tiny_spec, synthetic_data, quick_recipe.model_copy(update={"epochs": 1}))
    fresh = build_model(tiny_spec)
    fresh.load_state_dict(result.state_dict())
    accuracy = evaluate_accuracy(fresh, synthetic_data.x_val, synthetic_data.y_val, tiny_spec.resolution)
    assert accuracy == result.final_accuracy


def test_recalibrated_batchnorm_holds_the_statistics_of_the_given_images():
    norm = nn.BatchNorm2d(2)
    model = nn.Sequential(norm)
    images = torch.arange(2 * 2 * 3 * 3, dtype=torch.float32).reshape(2, 2, 3, 3)
    recalibrate_batchnorm(model, images, batch_size=2, resolution=None)

    assert torch.allclose(norm.running_mean, images.mean(dim=(0, 2, 3)))
    assert torch.allclose(norm.running_var, images.var(dim=(0, 2, 3), unbiased=True))
    assert norm.momentum == 0.1 and not model.training


@pytest.mark.parametrize(
    "fields",
    [{"epochs": 0}, {"batch_size": 1}, {"lr": 0.0}, {"lr": float("inf")}, {"warmup_epochs": 3}, {"optimizer": "lamb"}],
)
def test_recipe_rejects_bad_values(fields):
    with pytest.raises(ValidationError):
        TrainingRecipe(**{"epochs": 3, **fields})


def test_bad_data_is_refused(tiny_spec, synthetic_data, quick_recipe):
    with pytest.raises(ValueError, match="labels"):
        ArrayData(
            x_train=synthetic_data.x_train,
            y_train=np.full(len(synthetic_data.y_train), 9, dtype=np.int64),
            x_val=synthetic_data.x_val,
            y_val=synthetic_data.y_val,
            num_classes=4,
            in_channels=3,
        )
    with pytest.raises(ValueError, match="NCHW"):
        ArrayData(
            x_train=synthetic_data.x_train[:, 0],
            y_train=synthetic_data.y_train,
            x_val=synthetic_data.x_val,
            y_val=synthetic_data.y_val,
            num_classes=4,
            in_channels=3,
        )


def test_an_epoch_over_a_tiny_train_part_sees_at_least_min_epoch_images(tiny_spec, data_factory, quick_recipe):
    """40 train images at batch 32 are 2 steps an epoch (0.60 after one, chance 0.25). With
    `min_epoch_images` the epoch passes over them 7 times (each pass reshuffled), 9 steps (0.95)."""
    from nas.evaluation.training import epoch_passes

    passes = (epoch_passes(40, None), epoch_passes(40, 256), epoch_passes(300, 256), epoch_passes(256, 256))
    assert passes == (1, 7, 1, 1)
    tiny = data_factory(n_train=40, n_val=80, seed=3)
    one_epoch = quick_recipe.model_copy(update={"epochs": 1})
    plain = train_and_evaluate(tiny_spec, tiny, one_epoch)
    floored = train_and_evaluate(tiny_spec, tiny, one_epoch.model_copy(update={"min_epoch_images": 256}))

    assert floored.final_accuracy >= plain.final_accuracy + 0.15
    assert floored.final_accuracy > 0.85
    # Large enough train parts are untouched: the same run with and without the floor.
    same = train_and_evaluate(tiny_spec, tiny, one_epoch.model_copy(update={"min_epoch_images": 40}))
    assert same.epoch_train_losses == plain.epoch_train_losses
