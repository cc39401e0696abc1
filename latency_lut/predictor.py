"""Whole-network latency from the lookup table, with a per-device calibration.

A network's latency is predicted as the sum of its layers' measured latencies, corrected by a linear
calibration fitted on a few end-to-end measurements of the same device:

    predicted = scale * sum(layer latencies) + per_layer * number_of_layers + offset

`scale` absorbs what isolated timing misses (caches warmed by the previous layer, memory traffic
between layers), `per_layer` the fixed cost each timed run carries that a whole network pays once,
and `offset` the per-inference overhead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from latency_lut.table import LatencyTable
from search_spaces.arch_spec import ArchSpec
from search_spaces.space import GENES_PER_SLOT, SearchSpace

MIN_FRACTION_OF_SUM = 0.1
SCALE_RANGE = (0.1, 10.0)


class MissingKeysError(LookupError):
    """The lookup table lacks keys needed to price a network or a space.

    With `space` and `resolution` (a search's deployment scope), the message names the scope to
    profile and how: the agent on the device, or a kit for a device that cannot reach the server.
    """

    def __init__(
        self, device: str, missing: Sequence[str], space: str | None = None, resolution: int | None = None
    ) -> None:
        self.device = device
        self.missing = list(missing)
        self.space = space
        self.resolution = resolution
        shown = ", ".join(self.missing[:5]) + (" ..." if len(self.missing) > 5 else "")
        if space is not None and resolution is not None:
            message = (
                f"lookup table of device {device!r} lacks the deployment scope {space} at {resolution} px "
                f"({len(self.missing)} key(s), e.g. {shown}); profile it on the device with `hwnas agent --device "
                f"{device} --space {space} --resolution {resolution}`, or get a kit with `hwnas lut kit {device} "
                f"--space {space} --resolution {resolution} -o kit.zip`, run it there and import its results"
            )
        else:
            message = (
                f"lookup table of device {device!r} lacks {len(self.missing)} key(s): {shown}; "
                f"profile them with `hwnas lut profile {device}` or import a kit's results"
            )
        super().__init__(message)


@dataclass(frozen=True)
class Calibration:
    scale: float = 1.0
    per_layer_ms: float = 0.0
    offset_ms: float = 0.0
    n_measurements: int = 0
    method: str = "identity"

    def apply(self, raw_sum_ms: np.ndarray | float, n_layers: np.ndarray | int) -> np.ndarray | float:
        """Calibrated latency; never below a tenth of the raw sum, so extrapolating far outside the
        calibration networks cannot produce a nonsensical (zero or negative) latency."""
        calibrated = self.scale * raw_sum_ms + self.per_layer_ms * n_layers + self.offset_ms
        return np.maximum(calibrated, MIN_FRACTION_OF_SUM * np.asarray(raw_sum_ms))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        return cls(**data)


_MODELS: tuple[tuple[str, int], ...] = (("scale", 1), ("linear-sum", 3), ("linear-sum-layers", 6))


def _features(method: str, sums: np.ndarray, layers: np.ndarray) -> np.ndarray:
    if method == "scale":
        return sums[:, None]
    if method == "linear-sum":
        return np.column_stack([sums, np.ones_like(sums)])
    return np.column_stack([sums, layers, np.ones_like(sums)])


def _fit(method: str, sums: np.ndarray, layers: np.ndarray, measured: np.ndarray) -> np.ndarray | None:
    """Relative least squares (every network counts the same whatever its latency); None if not sane."""
    features = _features(method, sums, layers)
    coef, *_ = np.linalg.lstsq(features / measured[:, None], np.ones_like(sums), rcond=None)
    if not SCALE_RANGE[0] <= coef[0] <= SCALE_RANGE[1] or np.any(features @ coef <= 0):
        return None
    return coef


def fit_calibration(raw_sums_ms: Sequence[float], n_layers: Sequence[int], measured_ms: Sequence[float]) -> Calibration:
    """Fit measured ~ scale * sum [+ offset [+ per_layer * layers]], choosing the model by cross-validation.

    Richer models need more networks (1, 3, 6) and are kept only if sane on their own data (scale in
    SCALE_RANGE, positive predictions). With 5 or more networks, the model whose leave-one-out
    relative error is lowest wins: on a noisy machine a three-term fit on 20 networks can chase noise
    and extrapolate worse than a plain scale, and cross-validation tells which one generalises.
    The identity (no fit) takes part too.
    """
    sums = np.asarray(raw_sums_ms, dtype=np.float64)
    layers = np.asarray(n_layers, dtype=np.float64)
    measured = np.asarray(measured_ms, dtype=np.float64)
    if not (len(sums) == len(layers) == len(measured)):
        raise ValueError("raw sums, layer counts and measurements must have the same length")
    if len(sums) == 0:
        return Calibration()
    if not (np.all(np.isfinite(measured)) and np.all(measured > 0)):
        raise ValueError("end-to-end measurements must be finite and positive")
    n = len(sums)
    fits = {method: _fit(method, sums, layers, measured) for method, needed in _MODELS if n >= needed}
    fits = {method: coef for method, coef in fits.items() if coef is not None}
    if n >= 5:
        errors = {"identity": float(np.mean(np.abs(sums / measured - 1)))}
        for method in fits:
            held_out = []
            for i in range(n):
                keep = np.arange(n) != i
                coef = _fit(method, sums[keep], layers[keep], measured[keep])
                if coef is None:
                    held_out.append(np.inf)
                    continue
                predicted = float((_features(method, sums[i : i + 1], layers[i : i + 1]) @ coef)[0])
                held_out.append(abs(predicted / measured[i] - 1))
            errors[method] = float(np.mean(held_out))
        best = min(errors, key=errors.__getitem__)
    else:
        best = max(fits, key=lambda method: dict(_MODELS)[method]) if fits else "identity"
    if best == "identity":
        return Calibration(n_measurements=n, method="identity")
    coef = fits[best]
    return Calibration(
        scale=float(coef[0]),
        per_layer_ms=float(coef[1]) if best == "linear-sum-layers" else 0.0,
        offset_ms=float(coef[-1]) if best != "scale" else 0.0,
        n_measurements=n,
        method=best,
    )


class LatencyPredictor:
    def __init__(self, table: LatencyTable, calibration: Calibration | None = None) -> None:
        self.table = table
        self.calibration = calibration or Calibration()

    def raw_sum_ms(self, spec: ArchSpec) -> float:
        """Plain sum of the layers' measured latencies (no calibration)."""
        keys = spec.block_keys()
        missing = self.table.missing_keys(keys)
        if missing:
            raise MissingKeysError(self.table.device.name, missing)
        return float(sum(self.table.latency_ms(key) for key in keys))

    def predict_ms(self, spec: ArchSpec) -> float:
        return float(self.calibration.apply(self.raw_sum_ms(spec), len(spec.blocks) + 2))

    def with_calibration(self, calibration: Calibration) -> LatencyPredictor:
        return LatencyPredictor(self.table, calibration)

    def fit(self, specs: Sequence[ArchSpec], measured_ms: Sequence[float]) -> LatencyPredictor:
        """A copy calibrated on end-to-end measurements of `specs`."""
        sums = [self.raw_sum_ms(spec) for spec in specs]
        layers = [len(spec.blocks) + 2 for spec in specs]
        return self.with_calibration(fit_calibration(sums, layers, measured_ms))

    def pricer(self, space: SearchSpace) -> PopulationPricer:
        return PopulationPricer(space, self)


class PopulationPricer:
    """Prices whole populations of genomes of one space at once (numpy gathers, no Python loop).

    Built once per (space, table): every slot's latency for every block option is laid out in one flat
    array indexed by (resolution, width, slot, option), so a population costs a handful of array ops.
    """

    def __init__(self, space: SearchSpace, predictor: LatencyPredictor) -> None:
        missing = predictor.table.missing_keys(space.block_keys())
        if missing:
            raise MissingKeysError(predictor.table.device.name, missing)
        self.space = space
        self.calibration = predictor.calibration
        table = predictor.table
        n_r, n_w, n_s, n_o = len(space.resolutions), len(space.widths), space.n_slots, space.n_options
        self._slot_costs = np.zeros((n_r, n_w, n_s, n_o), dtype=np.float64)
        self._fixed_costs = np.zeros((n_r, n_w), dtype=np.float64)
        self._fixed_layers = np.zeros((n_r, n_w), dtype=np.int64)
        for r_i, resolution in enumerate(space.resolutions):
            for w_i, width in enumerate(space.widths):
                fixed = space.fixed_keys_at(resolution, width)
                self._fixed_costs[r_i, w_i] = sum(table.latency_ms(key) for key in fixed)
                self._fixed_layers[r_i, w_i] = len(fixed)
                for slot, slot_keys in enumerate(space.slot_keys_at(resolution, width)):
                    self._slot_costs[r_i, w_i, slot] = [table.latency_ms(key) for key in slot_keys]
        # Option index = k*w0 + e*w1 + se*w2 + a, as space.option_index computes it. An unused slot has
        # all four genes at -1, i.e. index -(w0+w1+w2+1) = -shift; shifting every index by `shift`
        # sends unused slots to column 0 (cost 0) and used ones to columns shift..shift+n_o-1, so the
        # whole population is priced with integer arithmetic and one gather, no masking.
        n_e, n_se, n_a = len(space.expansions), len(space.se_options), len(space.activations)
        self._weights = (n_e * n_se * n_a, n_se * n_a, n_a, 1)
        shift = sum(self._weights)
        self._shift = shift
        self._row = shift + n_o
        if n_r * n_w * n_s * self._row >= 2**31:
            raise ValueError(f"space {space.name} is too large to price in int32 indices")
        padded = np.zeros((n_r, n_w, n_s, self._row), dtype=np.float64)
        padded[..., shift:] = self._slot_costs
        self._flat_costs = padded.reshape(-1)
        self._slot_base = (np.arange(n_s, dtype=np.int32) * self._row + shift)[None, :]

    def raw_sum_ms(self, genomes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per genome: the plain LUT sum and the number of layers."""
        genes = np.asarray(genomes)
        if genes.ndim != 2 or genes.shape[1] != self.space.genome_length:
            raise ValueError(f"genomes must have shape (n, {self.space.genome_length}), got {genes.shape}")
        first = self.space.slot_gene_index(0)
        n_s = self.space.n_slots
        if genes.dtype != np.int32:
            # int32 arithmetic is several times faster than int64 here, and every index fits in it.
            genes = genes.astype(np.int32)
        block = genes[:, first : first + GENES_PER_SLOT * n_s]
        w0, w1, w2, _ = self._weights
        index = block[:, 0::GENES_PER_SLOT] * w0
        index += block[:, 1::GENES_PER_SLOT] * w1
        index += block[:, 2::GENES_PER_SLOT] * w2
        index += block[:, 3::GENES_PER_SLOT]
        res_i, width_i = genes[:, 0], genes[:, 1]
        index += ((res_i * len(self.space.widths) + width_i) * (n_s * self._row))[:, None]
        index += self._slot_base
        raw = self._fixed_costs[res_i, width_i] + np.take(self._flat_costs, index).sum(axis=1)
        layers = self._fixed_layers[res_i, width_i] + np.count_nonzero(block[:, 0::GENES_PER_SLOT] >= 0, axis=1)
        return raw, layers

    def predict_ms(self, genomes: np.ndarray) -> np.ndarray:
        raw, layers = self.raw_sum_ms(genomes)
        return np.asarray(self.calibration.apply(raw, layers), dtype=np.float64)

    def fastest(self) -> tuple[float, np.ndarray]:
        """The smallest predicted latency any network of the space reaches, and that network's genome.

        Exact: per resolution and width, every slot takes its cheapest option and every stage the
        depth that minimises its calibrated cost.
        """
        space, cal = self.space, self.calibration
        n_e, n_se, n_a = len(space.expansions), len(space.se_options), len(space.activations)
        best: tuple[float, np.ndarray] | None = None
        for r_i in range(len(space.resolutions)):
            for w_i in range(len(space.widths)):
                adjusted = cal.scale * self._slot_costs[r_i, w_i] + cal.per_layer_ms  # (slots, options)
                cheapest = adjusted.argmin(axis=1)
                total = cal.scale * self._fixed_costs[r_i, w_i] + cal.per_layer_ms * self._fixed_layers[r_i, w_i]
                total += cal.offset_ms
                genome = np.full(space.genome_length, -1, dtype=np.int64)
                genome[0], genome[1] = r_i, w_i
                for stage_i, stage in enumerate(space.stages):
                    offset = space.stage_slot_offsets[stage_i]
                    costs = [adjusted[offset + j, cheapest[offset + j]] for j in range(stage.max_depth)]
                    depth = min(stage.depths, key=lambda d: sum(costs[:d]))
                    total += sum(costs[:depth])
                    genome[2 + stage_i] = stage.depths.index(depth)
                    for j in range(depth):
                        option = int(cheapest[offset + j])
                        base = space.slot_gene_index(offset + j)
                        genome[base : base + GENES_PER_SLOT] = [
                            option // (n_a * n_se * n_e),
                            (option // (n_a * n_se)) % n_e,
                            (option // n_a) % n_se,
                            option % n_a,
                        ]
                if best is None or total < best[0]:
                    best = (float(total), genome)
        if best is None:
            raise ValueError(f"space {space.name} has no resolution or width to choose from")
        return best
