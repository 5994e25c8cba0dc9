"""Benchmarks looked up by name (what the command line uses), in the one registry shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Tuple

from clreplay.benchmarks.cifar import split_cifar10, split_cifar100
from clreplay.benchmarks.digits import split_digits
from clreplay.benchmarks.domain import permuted_fashion_mnist, rotated_fashion_mnist
from clreplay.benchmarks.fashion_mnist import split_fashion_mnist
from clreplay.benchmarks.files import split_mnist, split_npz
from clreplay.benchmarks.synthetic import split_synthetic
from clreplay.components import Registry
from clreplay.data.experience import Benchmark
from clreplay.options import Option

#: The options of the class-incremental streams (the domain-incremental ones hold every class
#: in every experience: neither applies).
CLASS_ORDER = Option(
    "class_order", None, "class order over the experiences: label (ascending, the papers'), a "
    "permutation such as 3,1,4,0,2,..., or by default a shuffle seeded by --seed", kind=str)
BLURRY = Option(
    "blurry", 0.0, "blurry boundaries: the share of each class's training samples put in other "
    "experiences", minimum=0.0, maximum=1.0,
    open_maximum=True)
_STREAM = (CLASS_ORDER, BLURRY)


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark as the registry sees it: ``build(*data, n_experiences=, seed=)``, whether it
    reads a data path (``data``: ``"required"``, ``"optional"`` (a default folder) or
    ``"none"``), whether its samples are images ``(C, H, W)`` kept as ``uint8`` (``image``),
    and its options beyond the run's (``class_order`` and ``blurry`` for class-incremental
    streams)."""

    name: str
    summary: str
    build: Callable[..., Benchmark]
    data: str = "none"
    image: bool = False
    options: Tuple = ()


BENCHMARKS = Registry("benchmark", [
    BenchmarkSpec("split_cifar10", "CIFAR-10 from its python archive (--data), 32x32 colour images",
                  split_cifar10, data="required", image=True, options=_STREAM),
    BenchmarkSpec("split_cifar100", "CIFAR-100 from its python archive (--data), 32x32 colour images",
                  split_cifar100, data="required", image=True, options=_STREAM),
    BenchmarkSpec("split_digits", "scikit-learn's bundled 8x8 digits: 1,797 flat vectors of 64 values",
                  split_digits, options=_STREAM),
    BenchmarkSpec("split_fashion_mnist", "Fashion-MNIST's IDX files (Debian's dataset-fashion-mnist by "
                  "default), 28x28 grey images", split_fashion_mnist, data="optional", image=True,
                  options=_STREAM),
    BenchmarkSpec("split_mnist", "MNIST-format IDX files in a folder (--data), 28x28 grey images",
                  split_mnist, data="required", image=True, options=_STREAM),
    BenchmarkSpec("split_npz", "x_train, y_train, x_test, y_test arrays of an .npz file (--data)",
                  split_npz, data="required", options=_STREAM),
    BenchmarkSpec("split_synthetic", "seeded Gaussian clusters, for scale tests", split_synthetic,
                  options=_STREAM),
    BenchmarkSpec("permuted_fashion_mnist", "domain-incremental Fashion-MNIST: the ten classes in every "
                  "experience, each experience's pixels in its own seeded permutation", permuted_fashion_mnist,
                  data="optional", image=True),
    BenchmarkSpec("rotated_fashion_mnist", "domain-incremental Fashion-MNIST: the ten classes in every "
                  "experience, each experience's images rotated by its own seeded angle in [0, 180)",
                  rotated_fashion_mnist, data="optional", image=True),
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


def parse_class_order(value):
    """A ``--class-order`` value as the benchmarks take it: ``"label"``, a list of ints, or
    None (the seeded shuffle; also ``"seeded"``). A malformed value is a ``ValueError``.

    >>> parse_class_order("label"), parse_class_order("3, 1,0,2"), parse_class_order(None)
    ('label', [3, 1, 0, 2], None)
    """
    if value is None or value == "seeded":
        return None
    if value == "label":
        return "label"
    if not isinstance(value, str):
        raise TypeError(f"class_order must be a str (label, seeded or comma-separated labels), got {value!r}")
    try:
        order = [int(part) for part in value.split(",")]
    except ValueError:
        raise ValueError(f"class_order must be label, seeded or comma-separated class labels (e.g. 3,1,0,2), "
                         f"got {value!r}") from None
    if len(set(order)) != len(order) or min(order) < 0:
        raise ValueError(f"class_order must list distinct non-negative class labels, got {value!r}")
    return order


def get_benchmark(name: str, *args, **kwargs) -> Benchmark:
    """Build the benchmark registered as ``name``; an unknown name suggests close ones.

    >>> get_benchmark("split_digts")
    Traceback (most recent call last):
    ...
    ValueError: benchmark must be one of 'split_cifar10', 'split_cifar100', 'split_digits', 'split_fashion_mnist', 'split_mnist', 'split_npz', 'split_synthetic', 'permuted_fashion_mnist', 'rotated_fashion_mnist', got 'split_digts'; did you mean 'split_digits'?
    """
    return BENCHMARKS.get(name).build(*args, **kwargs)
