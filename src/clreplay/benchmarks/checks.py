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
* :func:`read_file_bytes` and :func:`open_npz` read a (gzipped) file or an
  ``.npz`` archive, turning truncated, corrupt or mislabelled files into a
  ``ValueError`` naming the file.

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

import gzip
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

#: Samples checked at a time for non-finite values (bounds the check's extra memory).
_CHUNK_ELEMENTS = 1 << 24
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


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
    tensor = tensor.long()
    if tensor.numel() and int(tensor.min()) < 0:
        i = int(torch.nonzero(tensor < 0)[0])
        raise ValueError(
            f"{name} of {where} must be non-negative class indices, got {int(tensor[i])} at sample {i}"
        )
    return tensor


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
    return x.to(torch.float32).reshape(x.shape[0], -1), y


def remap_labels(
    train_y: Tensor, test_y: Tensor, *, source: str = ""
) -> Tuple[Tensor, Tensor, Optional[List[int]]]:
    """Labels mapped to ``0..C-1`` in ascending order of the train split's classes.

    Returns ``(train_y, test_y, original_labels)``: ``original_labels[c]`` is the label
    class ``c`` had in the data, or None when the labels already were ``0..C-1``
    (then the tensors are returned unchanged). A test label absent from the train
    split is a ValueError (its samples would drop out of every test experience).
    """
    classes = torch.unique(train_y)
    unknown = torch.unique(test_y[~torch.isin(test_y, classes)]).tolist()
    if unknown:
        raise ValueError(
            f"labels of the test split of {source!r} must be classes of the train split "
            f"{classes.tolist()}, got also {unknown}"
        )
    if len(classes) == 0 or int(classes[-1]) == len(classes) - 1:
        return train_y, test_y, None
    lookup = torch.full((int(classes[-1]) + 1,), -1, dtype=torch.long)
    lookup[classes] = torch.arange(len(classes))
    return lookup[train_y], lookup[test_y], classes.tolist()


# ------------------------------------------------------------------- files
def read_file_bytes(path: str | os.PathLike, *, what: str = "file") -> bytes:
    """The bytes of ``path``, decompressed when it ends in ``.gz``.

    A ``.gz`` file that is not gzip, is truncated or is corrupt is a ValueError
    naming the file (instead of ``BadGzipFile``/``EOFError`` from deep in gzip).
    """
    path = Path(path)
    if path.suffix != ".gz":
        return path.read_bytes()
    with open(path, "rb") as f:
        head = f.read(2)
    if head != _GZIP_MAGIC:
        raise ValueError(
            f"{what} {str(path)!r} must be gzip-compressed (its name ends in .gz), got a file "
            f"starting with {head!r}; decompress it or remove the .gz suffix"
        )
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except EOFError:
        raise ValueError(
            f"{what} {str(path)!r} is truncated: its gzip stream ends early (download it again)"
        ) from None
    except (gzip.BadGzipFile, zlib.error, OSError) as err:
        raise ValueError(f"{what} {str(path)!r} is a corrupt gzip file: {err}") from None


def open_npz(path: str | os.PathLike, keys: Sequence[str]) -> Dict[str, np.ndarray]:
    """The arrays ``keys`` of the ``.npz`` archive ``path`` (no pickled objects).

    A file that is not a zip archive (e.g. a text file named ``.npz``), a truncated or
    corrupt archive, missing keys and arrays of Python objects are ValueErrors naming
    the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"path must name an existing .npz file, got {str(path)!r}")
    if path.is_dir():
        raise ValueError(f"path must name an .npz file, got the folder {str(path)!r}")
    with open(path, "rb") as f:
        head = f.read(4)
    if head not in _ZIP_MAGICS:
        raise ValueError(
            f"path {str(path)!r} is not an npz archive (a zip of .npy arrays, as numpy.savez "
            f"writes): it starts with {head!r}"
        )
    corrupt = (zipfile.BadZipFile, EOFError, zlib.error, ValueError, OSError)
    try:
        archive = np.load(path, allow_pickle=False)
    except corrupt as err:
        if isinstance(err, (FileNotFoundError, PermissionError)):
            raise
        raise ValueError(
            f"path {str(path)!r} is not a readable npz archive (truncated or corrupt): {err}"
        ) from None
    with archive:
        missing = [k for k in keys if k not in archive.files]
        if missing:
            raise ValueError(f"path {str(path)!r} must hold arrays {list(keys)}, missing {missing}")
        arrays = {}
        for key in keys:
            try:
                arrays[key] = archive[key]
            except corrupt as err:
                if isinstance(err, ValueError) and "pickle" in str(err):
                    raise ValueError(
                        f"{key} in {str(path)!r} must be an array of numbers, got Python objects "
                        "(dtype=object), which are never unpickled"
                    ) from None
                raise ValueError(
                    f"{key} in {str(path)!r} is not a readable array (truncated or corrupt "
                    f"archive): {err}"
                ) from None
    return arrays
