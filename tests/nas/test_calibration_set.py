"""The networks a device's predictor is calibrated and scored on span the space's sizes."""

import numpy as np

from nas.calibration_set import calibration_networks, sample_specs
from search_spaces import get_space
from search_spaces.counting import count_spec


def test_calibration_networks_span_the_smallest_to_the_largest_network_of_the_space() -> None:
    """A uniform draw lands mid-size; the calibration set holds the space's cheapest and dearest
    networks and both parts (fit, held out) reach far into the small and the large end."""
    space = get_space("mobilenet_v3_small").with_options(resolutions=[32], widths=[0.75, 1.0], num_classes=10)
    lowest = count_spec(space.decode(space.sample_population(1, np.random.default_rng(0), lean=np.zeros(1))[0]))
    highest = count_spec(space.decode(space.sample_population(1, np.random.default_rng(0), lean=np.ones(1))[0]))
    uniform = [count_spec(space.decode(g)).madds for g in space.sample_population(40, np.random.default_rng(5))]
    calibration, held_out = calibration_networks(space)
    assert (len(calibration), len(held_out)) == (24, 16)
    madds = [count_spec(spec).madds for spec in calibration + held_out]
    assert min(madds) == lowest.madds and max(madds) == highest.madds
    for part in (calibration, held_out):
        sizes = [count_spec(spec).madds for spec in part]
        assert min(sizes) < np.percentile(uniform, 5) and max(sizes) > np.percentile(uniform, 95)
    again = sample_specs(space, 40, 7)
    assert [s.content_hash() for s in again] == [s.content_hash() for s in sample_specs(space, 40, 7)]
    assert len({s.content_hash() for s in again}) == 40
