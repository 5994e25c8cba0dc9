"""Split CIFAR-10 and CIFAR-100 from their standard "python version" archives.

``root`` may be the archive (``cifar-10-python.tar.gz``, ``cifar-100-python.tar.gz``),
the folder it unpacks to (``cifar-10-batches-py/``, ``cifar-100-python/``), or a
folder holding either. Batch files are read with
:func:`~clreplay.benchmarks.safe_pickle.read_cifar_pickle`, which runs no code from
them. Images are kept as ``uint8`` tensors ``(N, 3, 32, 32)``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from clreplay.benchmarks.checks import check_labels, check_splits, remap_labels
from clreplay.benchmarks.file_reading import read_up_to
from clreplay.benchmarks.safe_pickle import read_cifar_pickle
from clreplay.benchmarks.scenarios import class_incremental
from clreplay.data.dataset import ClassificationDataset
from clreplay.data.experience import Benchmark
from clreplay.input_files import check_regular_file, open_regular, read_regular, unreadable

#: The largest batch file read (the largest official one, CIFAR-100's ``train``, is
#: 155 MB): a corrupt archive or header declaring more is refused before it is read.
MAX_BATCH_BYTES = 256 * 2**20
#: Members looked through for the batch files (the official archives hold 8 or 5).
MAX_ARCHIVE_MEMBERS = 10_000

#: SHA-256 of the official archives, as published with Keras's ``cifar10.load_data``
#: / ``cifar100.load_data`` (``file_hash=``) and torchvision's prototype CIFAR datasets.
CIFAR_SHA256 = {
    "cifar-10-python.tar.gz": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    "cifar-100-python.tar.gz": "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
}


@dataclass(frozen=True)
class CifarFormat:
    """Where a CIFAR variant keeps its batches and labels."""

    name: str
    archive: str
    folder: str
    train_files: Tuple[str, ...]
    test_files: Tuple[str, ...]
    label_key: str
    n_classes: int
    #: Per-channel statistics of the training set, in [0, 1] units (those of DER's
    #: ``mammoth`` code base, seq-cifar10 and seq-cifar100).
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]


CIFAR10 = CifarFormat(
    "CIFAR-10", "cifar-10-python.tar.gz", "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "labels", 10,
    (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2615),
)
CIFAR100 = CifarFormat(
    "CIFAR-100", "cifar-100-python.tar.gz", "cifar-100-python", ("train",), ("test",),
    "fine_labels", 100, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761),
)


def sha256_of(path: Union[str, os.PathLike]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open_regular(path, what="archive") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _locate(root: Path, fmt: CifarFormat) -> Path:
    """The archive or the batch folder that ``root`` names or holds."""
    if root.exists() and not root.is_dir():
        check_regular_file(root, what=f"{fmt.name} archive")  # no FIFO, no device
        return root
    if root.is_dir():
        # exists(), not is_file(): a batch that is a FIFO or a folder is refused by name.
        for candidate in (root, root / fmt.folder):
            if all((candidate / n).exists() for n in fmt.train_files + fmt.test_files):
                return candidate
        if (root / fmt.archive).exists():
            check_regular_file(root / fmt.archive, what=f"{fmt.name} archive")
            return root / fmt.archive
    raise FileNotFoundError(
        f"root must be {fmt.name}'s {fmt.archive}, its {fmt.folder}/ folder or a folder "
        f"holding either, got {str(root)!r}"
    )


def _check_sha256(path: Path, fmt: CifarFormat, check_sha256: Union[bool, str]) -> None:
    if check_sha256 is False:
        return
    if path.is_dir():
        raise ValueError(
            f"check_sha256 verifies the {fmt.archive} archive (its SHA-256 is published), got "
            f"the unpacked folder {str(path)!r}; pass the archive or check_sha256=False"
        )
    expected = CIFAR_SHA256[fmt.archive] if check_sha256 is True else str(check_sha256).lower()
    actual = sha256_of(path)
    if actual != expected:
        what = f"the published SHA-256 of {fmt.archive}" if check_sha256 is True else "check_sha256"
        raise ValueError(
            f"SHA-256 mismatch for {str(path)!r}: got {actual}, expected {expected} ({what}); "
            "the file is damaged or not the official archive: download it again"
        )


def _read_members(path: Path, fmt: CifarFormat) -> Dict[str, bytes]:
    names = fmt.train_files + fmt.test_files
    if path.is_dir():
        return {n: read_regular(path / n, what=f"{fmt.name} batch file", limit=MAX_BATCH_BYTES)
                for n in names}
    wanted = {f"{fmt.folder}/{n}": n for n in names}
    out: Dict[str, bytes] = {}
    with open_regular(path, what=f"{fmt.name} archive") as raw:
        try:
            with tarfile.open(fileobj=raw, mode="r:*") as archive:
                for count, member in enumerate(archive):
                    if count >= MAX_ARCHIVE_MEMBERS:
                        raise ValueError(f"archive {str(path)!r} must hold the {fmt.name} batches "
                                         f"among its first {MAX_ARCHIVE_MEMBERS:,} members")
                    name = wanted.get(member.name)
                    if name is None:
                        continue
                    if not member.isfile():
                        raise ValueError(f"archive member {member.name} must be a regular file")
                    if member.size > MAX_BATCH_BYTES:
                        raise ValueError(f"archive member {member.name} of {str(path)!r} must be at "
                                         f"most {MAX_BATCH_BYTES:,} bytes, its header declares "
                                         f"{member.size:,}: the archive is corrupt")
                    data = read_up_to(archive.extractfile(member), member.size)
                    if len(data) != member.size:
                        raise EOFError(f"member {member.name} ends early")
                    out[name] = bytes(data)
                    if len(out) == len(names):
                        break
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise ValueError(f"root must be a readable (gzipped) tar archive, got {str(path)!r}, "
                             f"which is truncated or corrupt ({type(err).__name__}: {err}): "
                             "download it again") from None
        except OSError as err:
            raise unreadable(path, f"{fmt.name} archive", err) from None
    missing = [f"{fmt.folder}/{n}" for n in names if n not in out]
    if missing:
        raise ValueError(f"archive {str(path)!r} must hold {missing[0]}, got no such member")
    return out


def _batch(data: bytes, fmt: CifarFormat, source: str, split: str) -> Tuple[np.ndarray, np.ndarray]:
    batch = read_cifar_pickle(data, source=source)
    missing = [k for k in ("data", fmt.label_key) if k not in batch]
    if missing:
        raise ValueError(f"{source} must hold the keys b'data' and b'{fmt.label_key}', missing {missing}")
    images, labels = batch["data"], batch[fmt.label_key]
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 \
            or images.shape[1] != 3072:
        raise ValueError(f"{source}: data must be a uint8 array (N, 3072), got "
                         f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}")
    # An empty batch's [] would read as float64: no label is an int label.
    labels = np.asarray(labels) if len(labels) else np.zeros(0, np.int64)
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(images):
        raise ValueError(f"{source}: {fmt.label_key} must hold one int label per image "
                         f"({len(images)}), got {labels.dtype} {labels.shape}")
    labels = check_labels(labels, source=source, split=split, name=fmt.label_key).numpy()
    if len(labels) and (labels.min() < 0 or labels.max() >= fmt.n_classes):
        raise ValueError(f"{source}: {fmt.label_key} must lie in [0, {fmt.n_classes}), "
                         f"got values in [{labels.min()}, {labels.max()}]")
    return images, labels


def _load(root, fmt: CifarFormat, check_sha256) -> Tuple[ClassificationDataset, ClassificationDataset,
                                                         Optional[List[int]]]:
    if not isinstance(check_sha256, (bool, str)):
        raise TypeError(f"check_sha256 must be a bool or a hex digest, got {check_sha256!r}")
    path = _locate(Path(root), fmt)
    _check_sha256(path, fmt, check_sha256)
    files = _read_members(path, fmt)
    splits: List[tuple] = []
    for split, names in (("train", fmt.train_files), ("test", fmt.test_files)):
        parts = [_batch(files[n], fmt, f"{path}/{n}" if path.is_dir() else f"{path}:{n}", split)
                 for n in names]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts]).astype(np.int64)
        # Rows are 1024 red, 1024 green then 1024 blue values, each plane row-major.
        x = torch.from_numpy(images.reshape(len(images), 3, 32, 32).copy())
        splits.append((x, torch.from_numpy(labels)))
    (x_train, y_train), (x_test, y_test) = splits
    check_splits(x_train.shape, x_test.shape, source=str(path))
    # The same label checks and mapping as every loader (a subset of the classes: 0..C-1).
    y_train, y_test, original = remap_labels(y_train, y_test, source=str(path))
    return ClassificationDataset(x_train, y_train), ClassificationDataset(x_test, y_test), original


def load_cifar10_datasets(root, *, check_sha256: Union[bool, str] = False):
    """(train, test) of CIFAR-10 (50,000 and 10,000 ``uint8`` images ``(3, 32, 32)``).

    ``check_sha256=True`` first compares the archive with its published SHA-256
    (a hex string compares with that digest instead).
    """
    return _load(root, CIFAR10, check_sha256)[:2]


def load_cifar100_datasets(root, *, check_sha256: Union[bool, str] = False):
    """(train, test) of CIFAR-100 with its 100 fine labels; see :func:`load_cifar10_datasets`."""
    return _load(root, CIFAR100, check_sha256)[:2]


def _split(fmt: CifarFormat, name: str, root, n_experiences, task_labels, class_order, seed,
           check_sha256, blurry=0.0) -> Benchmark:
    train, test, original = _load(root, fmt, check_sha256)
    bench = class_incremental(
        train, test, n_experiences, task_labels=task_labels, class_order=class_order, seed=seed,
        blurry=blurry,
    )
    bench.name, bench.mean, bench.std = name, fmt.mean, fmt.std
    bench.original_labels = original
    return bench


def split_cifar10(
    root: Union[str, os.PathLike],
    n_experiences: int = 5,
    *,
    task_labels: bool = False,
    class_order: Optional[Sequence[int] | str] = None,
    seed: Optional[int] = 0,
    check_sha256: Union[bool, str] = False,
    blurry: float = 0.0,
) -> Benchmark:
    """Class-incremental CIFAR-10: by default 5 experiences of 2 classes; ``uint8`` images
    ``(3, 32, 32)`` (``input_dtype``; a float model starts with
    :class:`~clreplay.data.InputNormalization`)."""
    return _split(CIFAR10, "split_cifar10", root, n_experiences, task_labels, class_order, seed,
                  check_sha256, blurry)


def split_cifar100(root: Union[str, os.PathLike], n_experiences: int = 10, *,
                   task_labels: bool = False, class_order: Optional[Sequence[int] | str] = None,
                   seed: Optional[int] = 0, check_sha256: Union[bool, str] = False,
                   blurry: float = 0.0) -> Benchmark:
    """Class-incremental CIFAR-100 (fine labels): 10 experiences of 10 classes by
    default, 20 of 5 with ``n_experiences=20``; ``uint8`` images ``(3, 32, 32)``."""
    return _split(CIFAR100, "split_cifar100", root, n_experiences, task_labels, class_order, seed,
                  check_sha256, blurry)
