"""Benchmarks looked up by name (what the command line uses)."""

from __future__ import annotations

import fnmatch
from typing import Callable, Dict, List

from clreplay._validation import check_choice
from clreplay.benchmarks.cifar import split_cifar10, split_cifar100
from clreplay.benchmarks.digits import split_digits
from clreplay.benchmarks.fashion_mnist import split_fashion_mnist
from clreplay.benchmarks.files import split_mnist, split_npz
from clreplay.benchmarks.synthetic import split_synthetic
from clreplay.data.experience import Benchmark

#: name -> (factory, its data path: "required", "optional" (a default folder) or "none")
_BENCHMARKS: Dict[str, tuple[Callable[..., Benchmark], str]] = {
    "split_digits": (split_digits, "none"),
    "split_synthetic": (split_synthetic, "none"),
    "split_mnist": (split_mnist, "required"),
    "split_fashion_mnist": (split_fashion_mnist, "optional"),
    "split_cifar10": (split_cifar10, "required"),
    "split_cifar100": (split_cifar100, "required"),
    "split_npz": (split_npz, "required"),
}


#: Benchmarks whose samples are images (uint8, (C, H, W)); the others are flat vectors.
IMAGE_BENCHMARKS = ("split_mnist", "split_fashion_mnist", "split_cifar10", "split_cifar100")


def list_benchmarks(pattern: str = "*") -> List[str]:
    """Registered benchmark names matching a glob ``pattern``.

    >>> list_benchmarks("split_d*")
    ['split_digits']
    """
    return sorted(n for n in _BENCHMARKS if fnmatch.fnmatch(n, pattern))


def data_path_usage(name: str) -> str:
    """Whether benchmark ``name`` reads a data path: "required", "optional" or "none"."""
    check_choice("benchmark", name, list_benchmarks())
    return _BENCHMARKS[name][1]


def needs_data_path(name: str) -> bool:
    return data_path_usage(name) == "required"


def get_benchmark(name: str, *args, **kwargs) -> Benchmark:
    """Build the benchmark registered as ``name``; an unknown name suggests close ones.

    >>> get_benchmark("split_digts")
    Traceback (most recent call last):
    ...
    ValueError: benchmark must be one of 'split_cifar10', 'split_cifar100', 'split_digits', 'split_fashion_mnist', 'split_mnist', 'split_npz', 'split_synthetic', got 'split_digts'; did you mean 'split_digits'?
    """
    check_choice("benchmark", name, list_benchmarks())
    return _BENCHMARKS[name][0](*args, **kwargs)
