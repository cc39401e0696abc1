"""Timing protocol, and the stand-alone runner shipped inside a profiling kit.

This file must import nothing but the standard library, numpy and onnxruntime: it is copied into
profiling kits as ``runner.py`` and run on devices that cannot reach the server. The server's own
profiler imports the same functions, so a kit measures exactly as `hwnas lut profile` does.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

INPUT_NAME = "input"


@dataclass(frozen=True)
class TimingPolicy:
    warmup_runs: int = 5
    min_runs: int = 15
    max_runs: int = 300
    batch_runs: int = 10
    target_spread: float = 0.05
    max_seconds: float = 3.0


QUICK_POLICY = TimingPolicy(warmup_runs=2, min_runs=5, max_runs=30, batch_runs=5, max_seconds=0.5)


@dataclass(frozen=True)
class Measurement:
    median_ms: float
    iqr_ms: float
    runs: int
    runtime_version: str

    @property
    def spread(self) -> float:
        """IQR relative to the median."""
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else math.inf


def timing_session(
    onnx_model: bytes | str, threads: int, provider: str = "CPUExecutionProvider"
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    return ort.InferenceSession(onnx_model, options, providers=[provider])


def time_session(
    session: ort.InferenceSession, input_shape: tuple[int, ...], policy: TimingPolicy = TimingPolicy()
) -> Measurement:
    """Warm up, then time single runs until IQR/median <= target (after min_runs) or a cap is hit."""
    feed = {INPUT_NAME: np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)}
    for _ in range(policy.warmup_runs):
        session.run(None, feed)
    samples: list[int] = []
    started = time.perf_counter()
    while True:
        for _ in range(policy.batch_runs):
            tick = time.perf_counter_ns()
            session.run(None, feed)
            samples.append(time.perf_counter_ns() - tick)
        times = np.asarray(samples, dtype=np.float64) / 1e6
        median = float(np.median(times))
        q1, q3 = np.percentile(times, [25, 75])
        spread = (q3 - q1) / median if median > 0 else math.inf
        enough = len(samples) >= policy.min_runs and spread <= policy.target_spread
        capped = len(samples) >= policy.max_runs or time.perf_counter() - started > policy.max_seconds
        if enough or capped:
            return Measurement(median, float(q3 - q1), len(samples), ort.__version__)
