"""Benchmarks looked up by name (what the command line uses)."""

from __future__ import annotations

import fnmatch
from typing import Callable, Dict, List

from clreplay._validation import check_choice
from clreplay.benchmarks.digits import split_digits
from clreplay.benchmarks.experience import Benchmark
from clreplay.benchmarks.files import split_mnist, split_npz
from clreplay.benchmarks.synthetic import split_synthetic

#: name -> (factory, whether it needs a data path as first argument)
_BENCHMARKS: Dict[str, tuple[Callable[..., Benchmark], bool]] = {
    "split_digits": (split_digits, False),
    "split_synthetic": (split_synthetic, False),
    "split_mnist": (split_mnist, True),
    "split_npz": (split_npz, True),
}


def list_benchmarks(pattern: str = "*") -> List[str]:
    """Registered benchmark names matching a glob ``pattern``.

    >>> list_benchmarks("split_d*")
    ['split_digits']
    """
    return sorted(n for n in _BENCHMARKS if fnmatch.fnmatch(n, pattern))


def needs_data_path(name: str) -> bool:
    check_choice("benchmark", name, list_benchmarks())
    return _BENCHMARKS[name][1]


def get_benchmark(name: str, *args, **kwargs) -> Benchmark:
    """Build the benchmark registered as ``name``; an unknown name suggests close ones.

    >>> get_benchmark("split_digts")
    Traceback (most recent call last):
    ...
    ValueError: benchmark must be one of 'split_digits', 'split_mnist', 'split_npz', 'split_synthetic', got 'split_digts'; did you mean 'split_digits'?
    """
    check_choice("benchmark", name, list_benchmarks())
    return _BENCHMARKS[name][0](*args, **kwargs)
