"""Datasets for searches: built-in (`synthetic`, `digits`, `photos`) and uploaded (`.npz`, ImageFolder zips).

Every source ends as a validated `ImageDataset` (uint8, NCHW, square); `split_dataset` turns one
into the deterministic, stratified, standardised train/validation arrays that trials train on.
"""

from nas.datasets.builtin import digits_dataset, photos_dataset, synthetic_dataset
from nas.datasets.dataset import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_IMAGES,
    MIN_RESOLUTION,
    DatasetError,
    DatasetTooLargeError,
    ImageDataset,
    validate_dataset,
)
from nas.datasets.imagefolder import load_imagefolder_zip
from nas.datasets.npz import load_npz
from nas.datasets.source import BUILTIN_DATASETS, load_dataset
from nas.datasets.split import DatasetSplit, check_splittable, split_dataset

__all__ = [
    "BUILTIN_DATASETS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_IMAGES",
    "MIN_RESOLUTION",
    "DatasetError",
    "DatasetSplit",
    "DatasetTooLargeError",
    "ImageDataset",
    "digits_dataset",
    "load_dataset",
    "load_imagefolder_zip",
    "load_npz",
    "photos_dataset",
    "check_splittable",
    "split_dataset",
    "synthetic_dataset",
    "validate_dataset",
]
