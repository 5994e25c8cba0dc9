"""Seeded synthetic classification data, for scale tests and benchmarks."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from clreplay._seeding import make_generator
from clreplay._validation import check_positive_float, check_positive_int, check_seed
from clreplay.benchmarks.scenarios import class_incremental
from clreplay.data.dataset import ClassificationDataset
from clreplay.data.experience import Benchmark


def make_synthetic(
    n_samples: int = 20_000,
    n_features: int = 784,
    n_classes: int = 10,
    *,
    test_fraction: float = 0.2,
    noise: float = 1.0,
    seed: int = 0,
) -> Tuple[ClassificationDataset, ClassificationDataset]:
    """Gaussian blobs: one random centre per class plus isotropic ``noise``.

    ``n_samples`` training samples (classes equally represented, the remainder
    to the first classes) and ``round(n_samples * test_fraction)`` test samples,
    all drawn from a generator seeded with ``seed``.
    """
    n_samples = check_positive_int("n_samples", n_samples)
    n_features = check_positive_int("n_features", n_features)
    n_classes = check_positive_int("n_classes", n_classes)
    noise = check_positive_float("noise", noise)
    seed = check_seed("seed", seed)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    if n_samples < n_classes:
        raise ValueError(f"n_samples must be at least n_classes ({n_classes}), got {n_samples}")
    gen = make_generator(seed)
    centres = torch.randn(n_classes, n_features, generator=gen) * 2.0

    def draw(n: int) -> ClassificationDataset:
        y = torch.arange(n) % n_classes
        x = centres[y] + noise * torch.randn(n, n_features, generator=gen)
        return ClassificationDataset(x, y)

    return draw(n_samples), draw(max(n_classes, round(n_samples * test_fraction)))


def split_synthetic(
    n_experiences: int = 5,
    *,
    n_samples: int = 20_000,
    n_features: int = 784,
    n_classes: int = 10,
    task_labels: bool = False,
    class_order: Optional[Sequence[int] | str] = None,
    seed: Optional[int] = 0,
    blurry: float = 0.0,
) -> Benchmark:
    """A class-incremental stream over :func:`make_synthetic` data (``float32`` vectors)."""
    train, test = make_synthetic(
        n_samples, n_features, n_classes, seed=0 if seed is None else seed
    )
    bench = class_incremental(
        train, test, n_experiences, task_labels=task_labels, class_order=class_order, seed=seed,
        blurry=blurry,
    )
    bench.name = "split_synthetic"
    return bench
