"""Fixtures shared by the search_spaces tests: a tiny hand-written network and 32 px search spaces."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from search_spaces import SPACES, ArchSpec, BlockSpec, HeadSpec, SearchSpace, StemSpec


@pytest.fixture(scope="module", autouse=True)
def single_torch_thread() -> Iterator[None]:
    """Run these tests on one intra-op thread, and restore the setting afterwards.

    The models here are tiny: a thread pool only adds wake-up latency (tens of milliseconds per op on
    a busy machine) and makes float summation order depend on the machine.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def build_tiny_spec() -> ArchSpec:
    """Seven blocks that between them hit every builder branch at 32 px.

    ds and ir blocks, every activation, SE on and off, an ir block without expansion, and residual
    connections present (stride 1, equal widths) and absent (stride 2, or widths that differ).
    """
    return ArchSpec(
        resolution=32,
        stem=StemSpec(out_channels=16, activation="hswish"),
        blocks=(
            BlockSpec(kind="ds", kernel=3, stride=1, mid_channels=16, out_channels=16, activation="relu6"),
            BlockSpec(kind="ir", kernel=3, stride=1, mid_channels=16, out_channels=16, activation="relu"),
            BlockSpec(kind="ir", kernel=5, stride=2, mid_channels=48, out_channels=24, se=True, activation="hswish"),
            BlockSpec(kind="ir", kernel=7, stride=1, mid_channels=72, out_channels=24, se=True, activation="relu6"),
            BlockSpec(kind="ir", kernel=3, stride=1, mid_channels=96, out_channels=32, activation="hswish"),
            BlockSpec(kind="ds", kernel=5, stride=2, mid_channels=32, out_channels=40, activation="relu"),
            BlockSpec(kind="ir", kernel=3, stride=2, mid_channels=40, out_channels=40, activation="relu"),
        ),
        head=HeadSpec(conv_channels=96, hidden_channels=64, num_classes=10, activation="hswish"),
        name="tiny",
    )


@pytest.fixture
def tiny_spec() -> ArchSpec:
    return build_tiny_spec()


@pytest.fixture(scope="session")
def spaces32() -> dict[str, SearchSpace]:
    """Every registered space at 32 px and 10 classes, so that built models stay small."""
    return {name: space.with_options(resolutions=[32], num_classes=10) for name, space in SPACES.items()}
