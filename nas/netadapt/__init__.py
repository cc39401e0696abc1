"""NetAdapt: shrink a searched network layer by layer until its predicted latency meets a budget.

`groups` says which channel counts may shrink (and which must shrink together), `pruning` narrows a
trained network keeping its largest-L1 channels, `pricing` prices proposals with a lookup table
that lacks their keys (profiled here, or interpolated for a remote device), `algorithm` is the loop.
"""

from nas.netadapt.algorithm import NetAdaptProposal, NetAdaptResult, NetAdaptStep, netadapt
from nas.netadapt.groups import (
    ChannelGroup,
    apply_widths,
    candidate_widths,
    channel_groups,
    field_widths,
    prunable_groups,
)
from nas.netadapt.pricing import InterpolationError, interpolate_from
from nas.netadapt.pruning import filter_l1_norms, kept_channels, prune_model, select_channels

__all__ = [
    "ChannelGroup",
    "InterpolationError",
    "NetAdaptProposal",
    "NetAdaptResult",
    "NetAdaptStep",
    "apply_widths",
    "candidate_widths",
    "channel_groups",
    "field_widths",
    "filter_l1_norms",
    "interpolate_from",
    "kept_channels",
    "netadapt",
    "prunable_groups",
    "prune_model",
    "select_channels",
]
