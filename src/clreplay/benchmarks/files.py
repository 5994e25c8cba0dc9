"""Loaders for data sets kept in standard files (nothing is downloaded).

* ``.npz`` archives with arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``;
* MNIST-style IDX files (``train-images-idx3-ubyte`` and friends, optionally
  gzipped), the format of MNIST, Fashion-MNIST and KMNIST.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from clreplay.benchmarks.experience import Benchmark
from clreplay.benchmarks.scenarios import class_incremental
from clreplay.data.dataset import ClassificationDataset

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped or not) into an array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"path must be an IDX file, got {str(path)!r} with header {data[:4]!r}")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - offset != expected:
        raise ValueError(
            f"path {str(path)!r} declares shape {dims} ({expected} bytes) but holds "
            f"{len(data) - offset} bytes of data"
        )
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).exists():
            return root / name
    raise FileNotFoundError(f"root must hold {stem} or {stem}.gz, got a folder without it: {root}")


def load_idx_datasets(root: str | os.PathLike) -> Tuple[ClassificationDataset, ClassificationDataset]:
    """(train, test) from the four MNIST-format files in ``root``; pixels scaled to [0, 1]."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"root must be a folder, got {str(root)!r}")
    parts = []
    for split in ("train", "t10k"):
        images = read_idx(_find(root, f"{split}-images-idx3-ubyte"))
        labels = read_idx(_find(root, f"{split}-labels-idx1-ubyte"))
        x = torch.from_numpy(images.astype(np.float32) / 255.0).reshape(len(images), -1)
        parts.append(ClassificationDataset(x, torch.from_numpy(labels.astype(np.int64))))
    return parts[0], parts[1]


def load_idx_images(root: str | os.PathLike) -> Tuple[ClassificationDataset, ClassificationDataset]:
    """(train, test) images from the four MNIST-format files in ``root``, kept as
    ``uint8`` tensors ``(N, 1, H, W)`` (models normalise them per batch)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"root must be a folder, got {str(root)!r}")
    parts = []
    for split in ("train", "t10k"):
        images = read_idx(_find(root, f"{split}-images-idx3-ubyte"))
        labels = read_idx(_find(root, f"{split}-labels-idx1-ubyte"))
        if images.dtype != np.uint8 or images.ndim != 3:
            raise ValueError(f"{split} images must be uint8 (N, H, W), got {images.dtype} {images.shape}")
        x = torch.from_numpy(images.copy()).unsqueeze(1)
        parts.append(ClassificationDataset(x, torch.from_numpy(labels.astype(np.int64))))
    return parts[0], parts[1]


def load_npz_datasets(path: str | os.PathLike) -> Tuple[ClassificationDataset, ClassificationDataset]:
    """(train, test) from an ``.npz`` archive with ``x_train, y_train, x_test, y_test``."""
    with np.load(path, allow_pickle=False) as archive:
        missing = [k for k in _NPZ_KEYS if k not in archive.files]
        if missing:
            raise ValueError(f"path {str(path)!r} must hold arrays {list(_NPZ_KEYS)}, missing {missing}")
        arrays = {k: archive[k] for k in _NPZ_KEYS}
    return tuple(  # type: ignore[return-value]
        ClassificationDataset(
            torch.from_numpy(arrays[f"x_{s}"].astype(np.float32)).reshape(len(arrays[f"x_{s}"]), -1),
            torch.from_numpy(arrays[f"y_{s}"].astype(np.int64)),
        )
        for s in ("train", "test")
    )


def _split(train, test, name, n_experiences, task_labels, class_order, seed) -> Benchmark:
    bench = class_incremental(
        train, test, n_experiences, task_labels=task_labels, class_order=class_order, seed=seed
    )
    bench.name = name
    return bench


def split_mnist(
    root: str | os.PathLike,
    n_experiences: int = 5,
    *,
    task_labels: bool = False,
    class_order: Optional[Sequence[int]] = None,
    seed: Optional[int] = 0,
) -> Benchmark:
    """Class-incremental MNIST (or any IDX-format data set) read from ``root``, as
    ``uint8`` images ``(1, H, W)``."""
    train, test = load_idx_images(root)
    return _split(train, test, "split_mnist", n_experiences, task_labels, class_order, seed)


def split_npz(
    path: str | os.PathLike,
    n_experiences: int = 5,
    *,
    task_labels: bool = False,
    class_order: Optional[Sequence[int]] = None,
    seed: Optional[int] = 0,
) -> Benchmark:
    """Class-incremental stream over the arrays of an ``.npz`` archive."""
    train, test = load_npz_datasets(path)
    return _split(train, test, "split_npz", n_experiences, task_labels, class_order, seed)
