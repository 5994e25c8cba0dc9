"""Benchmarks looked up by name (what the command line uses), in the one registry shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Tuple

from clreplay.benchmarks.cifar import split_cifar10, split_cifar100
from clreplay.benchmarks.digits import split_digits
from clreplay.benchmarks.fashion_mnist import split_fashion_mnist
from clreplay.benchmarks.files import split_mnist, split_npz
from clreplay.benchmarks.synthetic import split_synthetic
from clreplay.components import Registry
from clreplay.data.experience import Benchmark


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark as the registry sees it: ``build(*data, n_experiences=, seed=)``, whether it
    reads a data path (``data``: ``"required"``, ``"optional"`` (a default folder) or
    ``"none"``), whether its samples are images ``(C, H, W)`` kept as ``uint8`` (``image``),
    and its options beyond the run's (none so far)."""

    name: str
    summary: str
    build: Callable[..., Benchmark]
    data: str = "none"
    image: bool = False
    options: Tuple = ()


BENCHMARKS = Registry("benchmark", [
    BenchmarkSpec("split_cifar10", "CIFAR-10 from its python archive (--data), 32x32 colour images",
                  split_cifar10, data="required", image=True),
    BenchmarkSpec("split_cifar100", "CIFAR-100 from its python archive (--data), 32x32 colour images",
                  split_cifar100, data="required", image=True),
    BenchmarkSpec("split_digits", "scikit-learn's bundled 8x8 digits: 1,797 flat vectors of 64 values",
                  split_digits),
    BenchmarkSpec("split_fashion_mnist", "Fashion-MNIST's IDX files (Debian's dataset-fashion-mnist by "
                  "default), 28x28 grey images", split_fashion_mnist, data="optional", image=True),
    BenchmarkSpec("split_mnist", "MNIST-format IDX files in a folder (--data), 28x28 grey images",
                  split_mnist, data="required", image=True),
    BenchmarkSpec("split_npz", "x_train, y_train, x_test, y_test arrays of an .npz file (--data)",
                  split_npz, data="required"),
    BenchmarkSpec("split_synthetic", "seeded Gaussian clusters, for scale tests", split_synthetic),
])

#: Benchmarks whose samples are images (uint8, (C, H, W)); the others are flat vectors.
IMAGE_BENCHMARKS = tuple(name for name, spec in BENCHMARKS.items() if spec.image)


def list_benchmarks(pattern: str = "*") -> List[str]:
    """Registered benchmark names matching a glob ``pattern``.

    >>> list_benchmarks("split_d*")
    ['split_digits']
    """
    return sorted(BENCHMARKS.names(pattern))


def data_path_usage(name: str) -> str:
    """Whether benchmark ``name`` reads a data path: "required", "optional" or "none"."""
    return BENCHMARKS.get(name).data


def needs_data_path(name: str) -> bool:
    return data_path_usage(name) == "required"


def get_benchmark(name: str, *args, **kwargs) -> Benchmark:
    """Build the benchmark registered as ``name``; an unknown name suggests close ones.

    >>> get_benchmark("split_digts")
    Traceback (most recent call last):
    ...
    ValueError: benchmark must be one of 'split_cifar10', 'split_cifar100', 'split_digits', 'split_fashion_mnist', 'split_mnist', 'split_npz', 'split_synthetic', got 'split_digts'; did you mean 'split_digits'?
    """
    return BENCHMARKS.get(name).build(*args, **kwargs)
