import math
import time

import numpy as np
import pytest
import torch

from nas.evaluation import PROXY_METHODS, naswot_score, proxy_score, spec_for_data
from search_spaces.builder import build_model
from search_spaces.space import get_space


@pytest.mark.parametrize("method", PROXY_METHODS)
def test_proxy_is_deterministic_and_finite(tiny_spec, synthetic_data, method):
    first = proxy_score(tiny_spec, synthetic_data, method=method)
    second = proxy_score(tiny_spec, synthetic_data, method=method)
    assert first == second
    assert math.isfinite(first)


@pytest.mark.parametrize("method", PROXY_METHODS)
def test_proxy_tells_networks_apart(tiny_spec, other_tiny_spec, synthetic_data, method):
    assert proxy_score(tiny_spec, synthetic_data, method=method) != proxy_score(
        other_tiny_spec, synthetic_data, method=method
    )


def test_naswot_depends_on_the_seed_and_batch(tiny_spec, synthetic_data):
    base = proxy_score(tiny_spec, synthetic_data, seed=0)
    assert proxy_score(tiny_spec, synthetic_data, seed=1) != base
    assert proxy_score(tiny_spec, synthetic_data, batch_size=32) != base


def test_proxy_leaves_the_global_rng_alone(tiny_spec, synthetic_data):
    torch.manual_seed(99)
    before = torch.get_rng_state()
    for method in PROXY_METHODS:
        proxy_score(tiny_spec, synthetic_data, method=method)
    assert torch.equal(torch.get_rng_state(), before)


def test_naswot_does_not_touch_the_callers_model(tiny_spec, synthetic_data):
    model = build_model(tiny_spec)
    model.eval()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    naswot_score(model, torch.as_tensor(synthetic_data.x_train[:16]))
    assert not model.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_naswot_rewards_telling_images_apart(tiny_spec, synthetic_data):
    model = build_model(tiny_spec)
    varied = torch.as_tensor(synthetic_data.x_train[:16])
    near_copies = varied[:1].repeat(16, 1, 1, 1) + 1e-3 * varied  # 16 almost identical images
    assert naswot_score(model, varied) > naswot_score(model, near_copies)


def test_proxy_refuses_mismatches_and_unknown_methods(spec_factory, synthetic_data):
    with pytest.raises(ValueError, match="classes"):
        proxy_score(spec_factory(num_classes=6), synthetic_data)
    with pytest.raises(ValueError, match="unknown proxy"):
        proxy_score(spec_factory(), synthetic_data, method="grasp")
    with pytest.raises(ValueError, match="batch_size"):
        proxy_score(spec_factory(), synthetic_data, batch_size=1)


@pytest.mark.parametrize("method", PROXY_METHODS)
def test_proxy_scores_a_searched_network_at_32px_quickly(digits, method):
    space = get_space("mobilenet_v3_small").with_options(resolutions=[32], num_classes=10)
    spec = spec_for_data(space.decode(space.sample(np.random.default_rng(3))), digits)
    proxy_score(spec, digits, method=method)  # warm-up: first-call allocations
    started = time.perf_counter()
    score = proxy_score(spec, digits, method=method)
    # About 0.1-0.3 s on one thread; the bound leaves room for a busy shared machine.
    assert time.perf_counter() - started < 2.0
    assert math.isfinite(score)
