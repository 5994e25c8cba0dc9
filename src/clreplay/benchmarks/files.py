"""Loaders for data sets kept in standard files (nothing is downloaded).

* ``.npz`` archives with arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``;
* MNIST-style IDX files (``train-images-idx3-ubyte`` and friends, optionally
  gzipped), the format of MNIST, Fashion-MNIST and KMNIST.

Everything read is checked before any training (:mod:`clreplay.benchmarks.checks`):
non-finite samples, non-integer or negative labels and unreadable files are errors
naming the file; sparse or 1-based labels are mapped to ``0..C-1`` and the benchmark
records each class's original label (``Benchmark.original_labels``). A benchmark is
named after its data (the file's stem, the folder's name) unless ``name`` is given.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from clreplay.benchmarks.checks import (
    check_finite,
    check_labels,
    check_splits,
    checked_split,
    remap_labels,
)
from clreplay.benchmarks.file_reading import open_npz, read_idx
from clreplay.benchmarks.scenarios import class_incremental
from clreplay.data.dataset import ClassificationDataset
from clreplay.data.experience import Benchmark

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).exists():
            return root / name
    raise FileNotFoundError(f"root must hold {stem} or {stem}.gz, got a folder without it: {root}")


def _load_idx(root: Path, *, images: bool = False):
    """Checked (train, test, original labels) from the four IDX files in ``root``: flat
    float vectors scaled to [0, 1], or with ``images`` ``uint8`` images ``(N, 1, H, W)``."""
    if not root.is_dir():
        raise FileNotFoundError(f"root must be a folder, got {str(root)!r}")
    parts, shapes = [], []
    for split, name in (("train", "train"), ("t10k", "test")):
        images_path = _find(root, f"{split}-images-idx3-ubyte")
        pixels = read_idx(images_path)
        labels = read_idx(_find(root, f"{split}-labels-idx1-ubyte"))
        source = str(images_path.parent)
        shapes.append(pixels.shape)
        if not images:
            x, y = checked_split(pixels, labels, source=source, split=name)
            parts.append((x / 255.0, y))
            continue
        check_finite(pixels, source=source, split=name)  # the first error a float file can have
        if pixels.dtype != np.uint8 or pixels.ndim != 3:
            raise ValueError(f"{name} images of {source} must be uint8 (N, H, W), got "
                             f"{pixels.dtype} {pixels.shape}")
        y = check_labels(labels, source=source, split=name, length=len(pixels))
        parts.append((torch.from_numpy(pixels.copy()).unsqueeze(1), y))
    (x_train, y_train), (x_test, y_test) = parts
    check_splits(*shapes, source=str(root))
    y_train, y_test, original = remap_labels(y_train, y_test, source=str(root))
    return ClassificationDataset(x_train, y_train), ClassificationDataset(x_test, y_test), original


def load_idx_datasets(root: str | os.PathLike) -> Tuple[ClassificationDataset, ClassificationDataset]:
    """(train, test) from the four MNIST-format files in ``root``; pixels scaled to [0, 1].

    Labels are checked and mapped to ``0..C-1`` (see the module docstring).
    """
    train, test, _ = _load_idx(Path(root))
    return train, test


def _load_npz(path: Path):
    arrays = open_npz(path, _NPZ_KEYS)
    x_train, y_train = checked_split(arrays["x_train"], arrays["y_train"], source=str(path), split="train")
    x_test, y_test = checked_split(arrays["x_test"], arrays["y_test"], source=str(path), split="test")
    check_splits(x_train.shape, x_test.shape, source=str(path))  # flattened: features must agree
    y_train, y_test, original = remap_labels(y_train, y_test, source=str(path))
    return ClassificationDataset(x_train, y_train), ClassificationDataset(x_test, y_test), original


def load_idx_images(root: str | os.PathLike) -> Tuple[ClassificationDataset, ClassificationDataset]:
    """(train, test) images from the four MNIST-format files in ``root``, kept as
    ``uint8`` tensors ``(N, 1, H, W)`` (models normalise them per batch); labels are
    checked and mapped to ``0..C-1`` (see the module docstring)."""
    train, test, _ = _load_idx(Path(root), images=True)
    return train, test


def load_npz_datasets(path: str | os.PathLike) -> Tuple[ClassificationDataset, ClassificationDataset]:
    """(train, test) from an ``.npz`` archive with ``x_train, y_train, x_test, y_test``.

    Samples must be finite and labels non-negative integers; labels are mapped to
    ``0..C-1`` (see the module docstring).
    """
    train, test, _ = _load_npz(Path(path))
    return train, test


def data_name(path: str | os.PathLike) -> str:
    """The name of a data set kept at ``path``: a file's stem, a folder's name (the
    parent's for torchvision's ``raw``/``processed`` folders).

    >>> data_name("data/fashion_mnist.npz"), data_name("data/FashionMNIST/raw")
    ('fashion_mnist', 'FashionMNIST')
    """
    path = Path(os.path.abspath(path))
    if path.suffix and not path.is_dir():
        return path.stem
    if path.name in ("raw", "processed") and path.parent.name:
        return path.parent.name
    return path.name


def _split(loaded, name, n_experiences, task_labels, class_order, seed, blurry=0.0) -> Benchmark:
    train, test, original = loaded
    bench = class_incremental(
        train, test, n_experiences, task_labels=task_labels, class_order=class_order, seed=seed,
        blurry=blurry,
    )
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError(f"name must be a non-empty str or None, got {name!r}")
    bench.name = name
    bench.original_labels = original
    return bench


def split_mnist(
    root: str | os.PathLike,
    n_experiences: int = 5,
    *,
    task_labels: bool = False,
    class_order: Optional[Sequence[int] | str] = None,
    seed: Optional[int] = 0,
    name: Optional[str] = None,
    blurry: float = 0.0,
) -> Benchmark:
    """Class-incremental MNIST (or any IDX-format data set) read from ``root``, as
    ``uint8`` images ``(1, H, W)`` (``input_dtype``; the model converts them: a float
    model starts with :class:`~clreplay.data.InputNormalization`).

    The benchmark is named ``name``, by default after ``root`` (:func:`data_name`), so a
    Fashion-MNIST folder is not reported as MNIST.
    """
    return _split(_load_idx(Path(root), images=True), name or data_name(root), n_experiences,
                  task_labels, class_order, seed, blurry)


def split_npz(path: str | os.PathLike, n_experiences: int = 5, *, task_labels: bool = False,
              class_order: Optional[Sequence[int] | str] = None, seed: Optional[int] = 0,
              name: Optional[str] = None, blurry: float = 0.0) -> Benchmark:
    """Class-incremental stream over the arrays of an ``.npz`` archive, named ``name``
    (by default the file's stem, :func:`data_name`); samples are ``float32``."""
    return _split(_load_npz(Path(path)), name or data_name(path), n_experiences, task_labels,
                  class_order, seed, blurry)
