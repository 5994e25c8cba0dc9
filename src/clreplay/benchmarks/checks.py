"""Checks of data as it is loaded, shared by every loader.

Training on bad data gives a wrong number without an error (a NaN pixel ends a
run at chance accuracy; float labels cast to int merge classes), so every loader
checks what it read before any training starts, and says where the problem is:
the file, the split, the first bad sample.

* :func:`checked_split` turns one split's arrays into tensors after checking
  them: numeric samples, all finite; integer, non-negative labels, one per sample.
* :func:`remap_labels` maps sparse or 1-based labels (``{0, 5, 7, 100}``) to
  ``0..C-1`` in ascending order and returns the original label of each class, which
  a benchmark records (``Benchmark.original_labels``, and ``results.json``).
* :func:`check_splits`: both splits hold samples, of one shape.
* :func:`read_file_bytes` and :func:`open_npz` (from
  :mod:`~clreplay.benchmarks.file_reading`) read a (gzipped) file or an ``.npz``
  archive with every size checked against the file, turning truncated, corrupt,
  oversized or mislabelled files into a ``ValueError`` naming the file.

A loader written elsewhere calls them in the same way:

>>> import numpy as np
>>> x, y = checked_split(np.ones((3, 2)), np.array([1, 5, 5]), source="a.npz", split="train")
>>> y_train, y_test, original = remap_labels(y, torch.tensor([5]), source="a.npz")
>>> y_train.tolist(), y_test.tolist(), original
([0, 1, 1], [1], [1, 5])
>>> checked_split(np.array([[0.0], [float("nan")]]), np.array([0, 1]), source="a.npz", split="train")
Traceback (most recent call last):
...
ValueError: x of the train split of 'a.npz' must be finite, got nan at sample 1 (feature 0); 1 non-finite value in all
"""

from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from clreplay.benchmarks.file_reading import open_npz, read_file_bytes  # noqa: F401  (re-exported)

#: Samples checked at a time for non-finite values (bounds the check's extra memory).
_CHUNK_ELEMENTS = 1 << 24
#: The largest label a LongTensor holds (a uint64 label beyond it would wrap negative).
_MAX_LABEL = 2**63 - 1


def _where(split: str, source: str) -> str:
    return f"the {split} split of {source!r}" if source else f"the {split} split"


def _dtype_name(tensor: Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _as_tensor(name: str, value: Any, where: str) -> Tensor:
    if isinstance(value, Tensor):
        return value
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind in "USV":
        raise TypeError(f"{name} of {where} must hold numbers, got dtype {array.dtype}")
    if array.dtype.byteorder not in ("=", "|"):  # big-endian IDX data
        array = array.astype(array.dtype.newbyteorder("="))
    array = np.ascontiguousarray(array)
    if not array.flags.writeable:  # e.g. np.frombuffer over a file's bytes
        array = array.copy()
    return torch.from_numpy(array)


def check_finite(x: Any, *, source: str = "", split: str = "train", name: str = "x") -> None:
    """Raise a ValueError naming the first sample with a NaN or infinite value.

    Integer data is finite by construction and is not scanned; float data is scanned
    in chunks, so the check needs little memory beyond the data itself.
    """
    tensor = _as_tensor(name, x, _where(split, source))
    if not (tensor.dtype.is_floating_point or tensor.dtype.is_complex) or tensor.numel() == 0:
        return
    rows = tensor.reshape(tensor.shape[0], -1) if tensor.dim() > 0 else tensor.reshape(1, 1)
    step = max(1, _CHUNK_ELEMENTS // max(1, rows.shape[1]))
    for start in range(0, rows.shape[0], step):
        bad = ~torch.isfinite(rows[start : start + step])
        if bool(bad.any()):
            sample, feature = (int(i) for i in torch.nonzero(bad)[0])
            value = rows[start + sample, feature].item()
            total = sum(int((~torch.isfinite(rows[s : s + step])).sum())
                        for s in range(start, rows.shape[0], step))
            raise ValueError(
                f"{name} of {_where(split, source)} must be finite, got {value} at sample "
                f"{start + sample} (feature {feature}); {total} non-finite "
                f"value{'s' if total > 1 else ''} in all"
            )


def check_labels(y: Any, *, source: str = "", split: str = "train", length: Optional[int] = None,
                 name: str = "labels") -> Tensor:
    """Labels as a LongTensor after checking them: integers, one-dimensional, >= 0.

    Float labels are refused even when they look whole: a cast would silently merge
    classes (``y * 0.7`` turns four classes into three). ``length`` is the number of
    samples the labels must match.
    """
    where = _where(split, source)
    tensor = _as_tensor(name, y, where)
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        example = ""
        if tensor.numel():
            flat = tensor.reshape(-1)
            whole = flat == torch.round(flat) if tensor.dtype.is_floating_point else None
            i = int(torch.nonzero(~whole)[0]) if whole is not None and not bool(whole.all()) else 0
            example = f" (e.g. {flat[i].item()!r} at sample {i})"
        raise TypeError(f"{name} of {where} must be integers, got dtype {_dtype_name(tensor)}{example}")
    if tensor.dim() != 1:
        raise ValueError(f"{name} of {where} must be one-dimensional, got shape {tuple(tensor.shape)}")
    if length is not None and tensor.shape[0] != length:
        raise ValueError(
            f"{name} of {where} must give one label per sample ({length}), got {tensor.shape[0]}"
        )
    _check_below_long_max(y, tensor, name, where)
    tensor = tensor.long()
    if tensor.numel() and int(tensor.min()) < 0:
        i = int(torch.nonzero(tensor < 0)[0])
        raise ValueError(
            f"{name} of {where} must be non-negative class indices, got {int(tensor[i])} at sample {i}"
        )
    return tensor


def _check_below_long_max(y: Any, tensor: Tensor, name: str, where: str) -> None:
    """A uint64 label above ``2**63 - 1`` would wrap to a negative long: report its true value."""
    if tensor.dtype != torch.uint64 or not tensor.numel():
        return
    array = y if isinstance(y, np.ndarray) else tensor.numpy()
    too_large = np.flatnonzero(np.asarray(array).reshape(-1) > _MAX_LABEL)
    if len(too_large):
        i = int(too_large[0])
        raise ValueError(f"{name} of {where} must be class indices below 2**63, got "
                         f"{int(np.asarray(array).reshape(-1)[i])} at sample {i}")


def checked_split(x: Any, y: Any, *, source: str = "", split: str = "train") -> Tuple[Tensor, Tensor]:
    """``(x, y)`` of one split as tensors (``x`` float32, one row per sample; ``y`` long)
    after :func:`check_labels` and :func:`check_finite`."""
    where = _where(split, source)
    x = _as_tensor("x", x, where)
    if x.dim() == 0:
        raise ValueError(f"x of {where} must have a first dimension indexing samples, got a scalar")
    if x.dtype.is_complex or x.dtype == torch.bool:
        raise TypeError(f"x of {where} must hold real numbers, got dtype {_dtype_name(x)}")
    y = check_labels(y, source=source, split=split, length=x.shape[0])
    check_finite(x, source=source, split=split)
    # Explicit width: reshape(n, -1) is ambiguous for a split of no sample (see check_splits).
    return x.to(torch.float32).reshape(x.shape[0], math.prod(x.shape[1:])), y


def check_splits(train_shape: Sequence[int], test_shape: Sequence[int], *, source: str = "",
                 name: str = "x") -> None:
    """Both splits hold at least one sample, and samples of one shape (``*_shape`` are
    the splits' array shapes, samples first): a model built for the train split's
    samples would fail on the first test batch, after a whole experience of training.
    """
    for split, shape in (("train", train_shape), ("test", test_shape)):
        if len(shape) and shape[0] == 0:
            raise ValueError(f"{name} of {_where(split, source)} must hold at least one sample, "
                             f"got none (shape {tuple(int(d) for d in shape)})")
    if tuple(train_shape[1:]) != tuple(test_shape[1:]):
        raise ValueError(
            f"{name} of {_where('test', source)} must hold samples of the train split's shape "
            f"{tuple(int(d) for d in train_shape[1:])}, got {tuple(int(d) for d in test_shape[1:])}"
        )


def _listed(values: List[int], limit: int = 20) -> str:
    return str(values) if len(values) <= limit else f"{str(values[:limit])[:-1]}, ...] ({len(values)})"


def remap_labels(
    train_y: Tensor, test_y: Tensor, *, source: str = ""
) -> Tuple[Tensor, Tensor, Optional[List[int]]]:
    """Labels mapped to ``0..C-1`` in ascending order of the train split's classes.

    Returns ``(train_y, test_y, original_labels)``: ``original_labels[c]`` is the label
    class ``c`` had in the data, or None when the labels already were ``0..C-1``
    (then the tensors are returned unchanged). A test label absent from the train
    split is a ValueError (its samples would drop out of every test experience).
    The mapping costs memory in the number of samples and of distinct labels, not
    in the labels' values (a label of ``2**40`` is one class like any other).
    """
    classes = torch.unique(train_y)  # sorted
    if len(classes):
        position = torch.searchsorted(classes, test_y).clamp_(max=len(classes) - 1)
        known = classes[position] == test_y
    else:
        position, known = test_y, torch.zeros_like(test_y, dtype=torch.bool)
    unknown = torch.unique(test_y[~known]).tolist()
    if unknown:
        raise ValueError(
            f"labels of the test split of {source!r} must be classes of the train split "
            f"{_listed(classes.tolist())}, got also {_listed(unknown)}"
        )
    if len(classes) == 0 or int(classes[-1]) == len(classes) - 1:
        return train_y, test_y, None
    return torch.searchsorted(classes, train_y), position, classes.tolist()
