import numpy as np
import pytest

from nas.evaluation import EvaluationResult, Evaluator, ProxyEvaluator, TrainingEvaluator, proxy_score
from search_spaces.space import get_space


@pytest.fixture(scope="module")
def searched_spec():
    """A decoded member of mobilenet_v3_small at 16 px, 0.75 width, 4 classes (RGB, as the space builds it)."""
    space = get_space("mobilenet_v3_small").with_options(resolutions=[16], widths=[0.75], num_classes=4)
    return space.decode(space.sample(np.random.default_rng(0)))


def test_training_evaluator_reports_the_run(searched_spec, synthetic_data, quick_recipe):
    evaluator = TrainingEvaluator(synthetic_data, quick_recipe.model_copy(update={"epochs": 2}))
    assert isinstance(evaluator, Evaluator)

    result = evaluator.evaluate(searched_spec)

    assert isinstance(result, EvaluationResult)
    assert len(result.per_epoch) == 2
    assert result.accuracy == result.per_epoch[-1]
    assert 0.25 < result.accuracy <= 1.0
    assert result.seconds > 0
    assert result.metrics["kind"] == "training"
    assert result.metrics["epochs_run"] == 2 and result.metrics["diverged"] is False
    assert result.metrics["best_accuracy"] == max(result.per_epoch)


def test_training_evaluator_passes_on_epoch_through(tiny_spec, synthetic_data, quick_recipe):
    result = TrainingEvaluator(synthetic_data, quick_recipe).evaluate(tiny_spec, on_epoch=lambda *_: True)
    assert len(result.per_epoch) == 1 and result.metrics["stopped_early"] is True


def test_training_evaluator_reports_divergence_as_zero(tiny_spec, synthetic_data, quick_recipe):
    result = TrainingEvaluator(synthetic_data, quick_recipe.model_copy(update={"lr": 1e6})).evaluate(tiny_spec)
    assert result.accuracy == 0.0 and result.metrics["diverged"] is True


@pytest.mark.parametrize("method", ["naswot", "synflow"])
def test_proxy_evaluator_returns_the_score(tiny_spec, synthetic_data, method):
    evaluator = ProxyEvaluator(synthetic_data, method)
    assert isinstance(evaluator, Evaluator)

    result = evaluator.evaluate(tiny_spec)

    assert result.accuracy == proxy_score(tiny_spec, synthetic_data, method=method)
    assert result.per_epoch == ()
    assert result.metrics["kind"] == "proxy" and result.metrics["method"] == method
    assert result.seconds > 0


def test_proxy_evaluator_refuses_an_unknown_method(synthetic_data):
    with pytest.raises(ValueError, match="unknown proxy"):
        ProxyEvaluator(synthetic_data, "snip")
