"""Training-free ("zero-cost") scores that rank untrained networks, so only promising ones are trained.

Two scores, both on freshly initialised weights:

``naswot``
    Mellor et al. 2021, "Neural Architecture Search without Training". Every rectifying unit splits
    its input space in two; a minibatch of N images gives each image a binary code (which side of
    every unit it lands on). The N x N kernel K[i, j] = number of units on which images i and j agree
    is large off the diagonal when the network maps different images to the same linear region. The
    score is log det K: higher when images are told apart at initialisation. For h-swish and ReLU6
    the split is taken at zero, as for ReLU.

``synflow``
    Tanaka et al. 2020, "Pruning neural networks without any data by iteratively conserving synaptic
    flow". With every weight replaced by its absolute value and an all-ones input, R = sum of the
    outputs; the score is log of sum |theta * dR/dtheta| over all parameters. Data-free: it sees the
    input shape only. Computed in float64 with BatchNorm at its initial (identity) statistics.

Both are deterministic for a given seed, and take milliseconds at 32 px. `docs/zero_cost_proxy.md`
reports how well they rank trained accuracy on a real dataset.
"""

from __future__ import annotations

import copy
import math
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nas.evaluation.data import TrainingData, check_spec_matches, check_training_data
from search_spaces.arch_spec import ArchSpec
from search_spaces.builder import build_model

ProxyMethod = Literal["naswot", "synflow"]
PROXY_METHODS: tuple[str, ...] = get_args(ProxyMethod)

# Units whose sign splits the input space (the SE gate's hard-sigmoid is a scale, not a split).
_RECTIFIERS = (nn.ReLU, nn.ReLU6, nn.Hardswish)


def proxy_score(
    spec: ArchSpec,
    data: TrainingData,
    batch_size: int = 64,
    seed: int = 0,
    method: ProxyMethod = "naswot",
) -> float:
    """Score `spec` at initialisation (higher = predicted more accurate after training).

    `seed` fixes both the initial weights and which `batch_size` training images are used; the
    caller's global torch RNG is left as it was. ValueError when the spec does not fit the data.
    """
    if method not in PROXY_METHODS:
        raise ValueError(f"unknown proxy method {method!r}; known: {', '.join(PROXY_METHODS)}")
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2, got {batch_size}")
    check_training_data(data)
    check_spec_matches(spec, data)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(spec)
    if method == "synflow":
        return synflow_score(model, (1, spec.in_channels, spec.resolution, spec.resolution))
    rng = np.random.default_rng(seed)
    count = min(batch_size, len(data.x_train))
    index = np.sort(rng.choice(len(data.x_train), count, replace=False))
    images = torch.as_tensor(np.asarray(data.x_train)[index]).float()
    if images.shape[-2:] != (spec.resolution, spec.resolution):
        shrinking = images.shape[-1] > spec.resolution
        images = F.interpolate(
            images, size=(spec.resolution, spec.resolution), mode="bilinear", align_corners=False, antialias=shrinking
        )
    return naswot_score(model, images)


def naswot_score(model: nn.Module, images: torch.Tensor) -> float:
    """log det of the activation-pattern agreement kernel of `images` (N >= 2) through `model`.

    Runs a copy of `model` with BatchNorm on batch statistics (as at the start of training), so the
    caller's module and its running statistics are not touched.
    """
    if images.ndim != 4 or len(images) < 2:
        raise ValueError(f"images must be an NCHW batch of at least 2, got shape {tuple(images.shape)}")
    network = copy.deepcopy(model)
    network.train()
    for module in network.modules():
        if isinstance(module, nn.Dropout):
            module.eval()
    n = len(images)
    agreement = torch.zeros(n, n, dtype=torch.float64)
    units = 0

    def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        # A pre-hook: the activations run in place, so their input is read before it is overwritten.
        nonlocal agreement, units
        codes = (inputs[0].detach().flatten(1) > 0).float()
        # Agreements = both on + both off; float32 counts are exact below 2**24 units per layer.
        agreement += (codes @ codes.T + (1.0 - codes) @ (1.0 - codes).T).double()
        units += codes.shape[1]

    handles = [m.register_forward_pre_hook(record) for m in network.modules() if isinstance(m, _RECTIFIERS)]
    try:
        with torch.no_grad():
            network(images.float())
    finally:
        for handle in handles:
            handle.remove()
    if units == 0:
        raise ValueError("the model has no ReLU, ReLU6 or h-swish units to take activation patterns from")
    # K is positive semi-definite; a tiny ridge keeps it definite when two images share every code.
    ridge = 1e-6 * units * torch.eye(n, dtype=torch.float64)
    sign, logdet = torch.linalg.slogdet(agreement + ridge)
    if sign <= 0 or not math.isfinite(float(logdet)):
        raise ArithmeticError("the activation-pattern kernel is not positive definite")
    return float(logdet)


def synflow_score(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """log of the summed synaptic flow |theta * dR/dtheta| of a float64, all-positive copy of `model`."""
    network = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.abs_()
    network.zero_grad(set_to_none=True)
    output = network(torch.ones(input_shape, dtype=torch.float64))
    output.sum().backward()
    flow = 0.0
    with torch.no_grad():
        for parameter in network.parameters():
            if parameter.grad is not None:
                flow += float((parameter * parameter.grad).abs().sum())
    if not (flow > 0 and math.isfinite(flow)):
        raise ArithmeticError(f"synaptic flow is {flow}; the network is too deep for float64 or has no path")
    return math.log(flow)
