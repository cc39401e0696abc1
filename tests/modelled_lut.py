"""Block times from a cost model, for end-to-end tests of something other than latency.

Profiling MobileNetV3-Small's 326 block keys at 16 px takes about a minute on the CI machine; tests of
process crashes and deployment topology need a complete table, not a measured one. Each key is
priced at 3 us + 0.1 ns per multiply-add. The searches these tables serve still measure their
winner end to end for real on this machine and calibrate the table against it. Tests of latency
itself (tests/latency_lut, tests/nas/test_latency_service.py) always measure.
"""

from __future__ import annotations

import onnxruntime

from latency_lut.table import LutEntry
from search_spaces import LayerKey
from search_spaces.counting import layer_counts
from search_spaces.space import SearchSpace


def modelled_ms(key: str) -> float:
    return 0.003 + 1e-7 * layer_counts(LayerKey.parse(key)).madds


def modelled_lut(space: SearchSpace) -> dict[str, LutEntry]:
    """`{key: LutEntry}` for every block key of `space` (runs 20, IQR 0.1 us)."""
    return {key: LutEntry(modelled_ms(key), 0.0001, 20, onnxruntime.__version__) for key in space.block_keys()}
