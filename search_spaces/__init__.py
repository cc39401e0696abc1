"""Architectures as data: ArchSpec, search spaces, the torch builder, counts, ONNX export, references."""

from search_spaces.arch_spec import ArchSpec, BlockSpec, HeadSpec, LayerKey, StemSpec, make_divisible
from search_spaces.builder import build_layer, build_model
from search_spaces.counting import Counts, count_spec, count_with_hooks, layer_counts
from search_spaces.reference import REFERENCE_NETS, reference_names, reference_spec
from search_spaces.space import SPACES, SearchSpace, StageChoices, get_space

__all__ = [
    "ArchSpec",
    "BlockSpec",
    "Counts",
    "HeadSpec",
    "LayerKey",
    "REFERENCE_NETS",
    "SPACES",
    "SearchSpace",
    "StageChoices",
    "StemSpec",
    "build_layer",
    "build_model",
    "count_spec",
    "count_with_hooks",
    "get_space",
    "layer_counts",
    "make_divisible",
    "reference_names",
    "reference_spec",
]
