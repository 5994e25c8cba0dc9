"""Split Fashion-MNIST from the four official IDX files, read offline.

Debian's package ``dataset-fashion-mnist`` installs them in
:data:`FASHION_MNIST_DIR`; any folder holding the four files (gzipped or not)
works too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

from clreplay.benchmarks.files import load_idx_images
from clreplay.benchmarks.scenarios import class_incremental
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
    when they are absent."""
    folder = FASHION_MNIST_DIR if root is None else Path(root)
    if not fashion_mnist_files_present(folder):
        missing = [n for n in FASHION_MNIST_FILES
                   if not (folder / n).is_file() and not (folder / f"{n}.gz").is_file()]
        raise FileNotFoundError(
            f"Fashion-MNIST not found: the folder {str(folder)!r} lacks {', '.join(missing)} "
            "(.gz or not). Install them with `apt-get install dataset-fashion-mnist` (into "
            f"{FASHION_MNIST_DIR}), or pass a folder holding the four files "
            "(--data DIR on the command line, root= in Python)."
        )
    return load_idx_images(folder)


def split_fashion_mnist(
    root: Optional[str | os.PathLike] = None,
    n_experiences: int = 5,
    *,
    task_labels: bool = False,
    class_order: Optional[Sequence[int] | str] = None,
    seed: Optional[int] = 0,
    blurry: float = 0.0,
) -> Benchmark:
    """Class-incremental Fashion-MNIST: by default 5 experiences of 2 classes, images
    kept as ``uint8`` ``(1, 28, 28)`` and scaled to [0, 1] by the model."""
    train, test = load_fashion_mnist_datasets(root)
    bench = class_incremental(
        train, test, n_experiences, task_labels=task_labels, class_order=class_order, seed=seed,
        blurry=blurry,
    )
    bench.name = "split_fashion_mnist"
    return bench
