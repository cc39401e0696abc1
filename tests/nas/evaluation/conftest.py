"""Fixtures for nas.evaluation: small data sets built here (not from nas.datasets) and tiny networks.

Every test runs torch on one thread (the machine is shared with benchmarks, and CPU results are
only bit-reproducible at a fixed thread count); the previous setting is restored afterwards.
"""

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from nas.evaluation import ArrayData, TrainingRecipe
from search_spaces.arch_spec import ArchSpec, BlockSpec, HeadSpec, StemSpec


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def make_synthetic_data(
    n_train: int = 200, n_val: int = 80, num_classes: int = 4, size: int = 16, channels: int = 3, seed: int = 0
) -> ArrayData:
    """Class-conditional images: a fixed coarse (4x4-cell) pattern per class plus unit Gaussian noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0.0, 1.0, (num_classes, channels, 4, 4))
    prototypes = np.kron(coarse, np.ones((1, 1, size // 4, size // 4)))

    def draw(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(count, dtype=np.int64) % num_classes
        rng.shuffle(labels)
        images = prototypes[labels] + rng.normal(0.0, 1.0, (count, channels, size, size))
        return images, labels

    x_train, y_train = draw(n_train)
    x_val, y_val = draw(n_val)
    mean, std = x_train.mean(), x_train.std()
    return ArrayData(
        x_train=((x_train - mean) / std).astype(np.float32),
        y_train=y_train,
        x_val=((x_val - mean) / std).astype(np.float32),
        y_val=y_val,
        num_classes=num_classes,
        in_channels=channels,
    )


def make_tiny_spec(
    blocks: tuple[str, ...] = ("ir_k3_s2_e24_c16_re", "ir_k3_s1_e32_c16_se_hs", "ir_k5_s2_e48_c24_hs"),
    resolution: int = 16,
    num_classes: int = 4,
    in_channels: int = 3,
) -> ArchSpec:
    return ArchSpec(
        resolution=resolution,
        in_channels=in_channels,
        stem=StemSpec(out_channels=8),
        blocks=tuple(BlockSpec.from_string(block) for block in blocks),
        # No hidden layer: two stacked 0.01-std linear layers (the builder's init) barely move in the
        # twenty steps a test trains for; the searched networks' wide hidden layers do.
        head=HeadSpec(conv_channels=48, hidden_channels=0, num_classes=num_classes, dropout=0.1),
    )


@pytest.fixture(scope="session")
def synthetic_data() -> ArrayData:
    """4 classes, 3 x 16 x 16, 200 train and 80 validation images (read it, never change it)."""
    return make_synthetic_data()


@pytest.fixture(scope="session")
def tiny_spec() -> ArchSpec:
    """Three blocks at 16 px for `synthetic_data`: trains an epoch in a fraction of a second."""
    return make_tiny_spec()


@pytest.fixture(scope="session")
def other_tiny_spec() -> ArchSpec:
    """A different network of the same input and classes as `tiny_spec` (wider, 7x7 kernels, no SE)."""
    return make_tiny_spec(blocks=("ir_k7_s2_e48_c24_hs", "ir_k3_s1_e72_c24_re", "ir_k7_s2_e96_c32_hs"))


@pytest.fixture(scope="session")
def quick_recipe() -> TrainingRecipe:
    return TrainingRecipe(epochs=3, batch_size=32, optimizer="sgd", lr=0.1, momentum=0.9, seed=0)


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's real handwritten digits at 32 px, 1 channel, standardised, stratified 80/20."""
    from nas.evaluation.proxy_study import digits_data

    return digits_data(resolution=32)


@pytest.fixture(scope="session")
def spec_factory():
    """`make_tiny_spec(blocks=..., resolution=16, num_classes=4, in_channels=3)`, for variants of `tiny_spec`."""
    return make_tiny_spec


@pytest.fixture(scope="session")
def data_factory():
    """`make_synthetic_data(n_train=200, n_val=80, num_classes=4, size=16, channels=3, seed=0)`."""
    return make_synthetic_data
