"""Benchmarks: streams of experiences built from bundled, synthetic or file-based data."""

from clreplay.benchmarks.digits import load_digits_datasets, split_digits
from clreplay.benchmarks.experience import Benchmark, Experience
from clreplay.benchmarks.files import (
    load_idx_datasets,
    load_npz_datasets,
    read_idx,
    split_mnist,
    split_npz,
)
from clreplay.benchmarks.registry import get_benchmark, list_benchmarks
from clreplay.benchmarks.scenarios import class_incremental, split_classes
from clreplay.benchmarks.synthetic import make_synthetic, split_synthetic

__all__ = [
    "Benchmark",
    "Experience",
    "class_incremental",
    "get_benchmark",
    "list_benchmarks",
    "load_digits_datasets",
    "load_idx_datasets",
    "load_npz_datasets",
    "make_synthetic",
    "read_idx",
    "split_classes",
    "split_digits",
    "split_mnist",
    "split_npz",
    "split_synthetic",
]
