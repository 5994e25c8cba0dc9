"""Split Digits: scikit-learn's bundled 8x8 digits as a class-incremental stream."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from clreplay.benchmarks.scenarios import class_incremental
from clreplay.data.dataset import ClassificationDataset
from clreplay.data.experience import Benchmark

#: Fraction of each class held out for testing; the split is fixed (random_state=0).
DIGITS_TEST_FRACTION = 0.3


def load_digits_datasets() -> Tuple[ClassificationDataset, ClassificationDataset]:
    """The 1,797 digits as (train, test): 64 features scaled to [0, 1], stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, stratify=y, random_state=0
    )

    def make(x_part, y_part):
        return ClassificationDataset(
            torch.tensor(x_part / 16.0, dtype=torch.float32), torch.tensor(y_part, dtype=torch.long)
        )

    return make(x_train, y_train), make(x_test, y_test)


def split_digits(
    n_experiences: int = 5,
    *,
    task_labels: bool = False,
    class_order: Optional[Sequence[int] | str] = None,
    seed: Optional[int] = 0,
    blurry: float = 0.0,
) -> Benchmark:
    """Class-incremental digits: by default 5 experiences of 2 classes each. Samples are
    ``float32`` vectors of 64 values in [0, 1] (``input_dtype``).

    >>> bench = split_digits()
    >>> bench.n_experiences, [len(e.classes_in_this_experience) for e in bench.train_stream]
    (5, [2, 2, 2, 2, 2])
    """
    train, test = load_digits_datasets()
    bench = class_incremental(
        train, test, n_experiences, task_labels=task_labels, class_order=class_order, seed=seed,
        blurry=blurry,
    )
    bench.name = "split_digits"
    return bench
