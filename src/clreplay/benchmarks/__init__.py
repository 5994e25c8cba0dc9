"""Benchmarks: streams of experiences built from bundled, synthetic or file-based data."""

from clreplay.benchmarks.cifar import (
    load_cifar10_datasets,
    load_cifar100_datasets,
    split_cifar10,
    split_cifar100,
)
from clreplay.benchmarks.digits import load_digits_datasets, split_digits
from clreplay.benchmarks.domain import (
    domain_incremental,
    permuted_fashion_mnist,
    rotated_fashion_mnist,
)
from clreplay.benchmarks.fashion_mnist import (
    FASHION_MNIST_DIR,
    load_fashion_mnist_datasets,
    split_fashion_mnist,
)
from clreplay.benchmarks.files import (
    load_idx_datasets,
    load_idx_images,
    load_npz_datasets,
    read_idx,
    split_mnist,
    split_npz,
)
from clreplay.benchmarks.registry import get_benchmark, list_benchmarks
from clreplay.benchmarks.scenarios import class_incremental, split_classes
from clreplay.benchmarks.synthetic import make_synthetic, split_synthetic
from clreplay.data.experience import Benchmark, Experience

__all__ = [
    "Benchmark",
    "Experience",
    "FASHION_MNIST_DIR",
    "class_incremental",
    "domain_incremental",
    "get_benchmark",
    "list_benchmarks",
    "load_cifar10_datasets",
    "load_cifar100_datasets",
    "load_digits_datasets",
    "load_fashion_mnist_datasets",
    "load_idx_datasets",
    "load_idx_images",
    "permuted_fashion_mnist",
    "rotated_fashion_mnist",
    "load_npz_datasets",
    "make_synthetic",
    "read_idx",
    "split_cifar10",
    "split_cifar100",
    "split_classes",
    "split_digits",
    "split_fashion_mnist",
    "split_mnist",
    "split_npz",
    "split_synthetic",
]
