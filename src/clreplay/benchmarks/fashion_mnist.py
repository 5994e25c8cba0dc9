"""Split Fashion-MNIST from the four official IDX files, read offline.

Debian's package ``dataset-fashion-mnist`` installs them in
:data:`FASHION_MNIST_DIR`; any folder holding the four files (gzipped or not)
works too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

from clreplay.benchmarks.files import _load_idx, _split
from clreplay.data.dataset import ClassificationDataset
from clreplay.data.experience import Benchmark

#: Where ``apt-get install dataset-fashion-mnist`` puts the files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def fashion_mnist_files_present(root: str | os.PathLike = FASHION_MNIST_DIR) -> bool:
    """True when ``root`` holds the four files (each gzipped or not)."""
    root = Path(root)
    return all((root / n).is_file() or (root / f"{n}.gz").is_file() for n in FASHION_MNIST_FILES)


def load_fashion_mnist_datasets(
    root: Optional[str | os.PathLike] = None,
) -> Tuple[ClassificationDataset, ClassificationDataset]:
    """(train, test): 60,000 and 10,000 ``uint8`` images ``(1, 28, 28)`` from ``root``
    (default :data:`FASHION_MNIST_DIR`); a FileNotFoundError saying how to get them
    when they are absent. Labels are checked and mapped to ``0..C-1`` like every
    loader's (:mod:`clreplay.benchmarks.files`)."""
    train, test, _ = _load_idx(_folder(root), images=True)
    return train, test


def _folder(root: Optional[str | os.PathLike]) -> Path:
    """The folder holding the four files, or a FileNotFoundError saying how to get them."""
    folder = FASHION_MNIST_DIR if root is None else Path(root)
    # Present but not regular files (a FIFO, a folder) are refused by the reader, by name.
    missing = [n for n in FASHION_MNIST_FILES
               if not (folder / n).exists() and not (folder / f"{n}.gz").exists()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST not found: the folder {str(folder)!r} lacks {', '.join(missing)} "
            "(.gz or not). Install them with `apt-get install dataset-fashion-mnist` (into "
            f"{FASHION_MNIST_DIR}), or pass a folder holding the four files "
            "(--data DIR on the command line, root= in Python)."
        )
    return folder


def split_fashion_mnist(
    root: Optional[str | os.PathLike] = None,
    n_experiences: int = 5,
    *,
    task_labels: bool = False,
    class_order: Optional[Sequence[int] | str] = None,
    seed: Optional[int] = 0,
    blurry: float = 0.0,
) -> Benchmark:
    """Class-incremental Fashion-MNIST: by default 5 experiences of 2 classes.

    Samples are ``uint8`` images ``(1, 28, 28)`` (``input_dtype``), a quarter of float32's
    bytes in the datasets and the replay memory; the model converts them. A model of your
    own starts with :class:`~clreplay.data.InputNormalization` (``bench.mean``,
    ``bench.std``), as :func:`clreplay.models.make_model`'s image models do."""
    return _split(_load_idx(_folder(root), images=True), "split_fashion_mnist", n_experiences,
                  task_labels, class_order, seed, blurry)
