"""Files for bench/fault_classes.py: small valid data sets in every format, and hostile
ones (decompression bombs, forged headers, special files), written in the exact formats.

Each builder writes into a folder and returns the ``clreplay run`` arguments that read it.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import List

import numpy as np

#: A small, fast configuration of every run (3 experiences of 4 samples per class or so).
FLAT = ["--n-experiences", "2", "--epochs", "1", "--hidden", "8", "--mem-size", "8", "--batch-size", "4"]


def npz(folder: Path, *, y=None, y_dtype=np.int64) -> List[str]:
    """A 4-class npz archive (``y``: the train labels, 16 of them)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y_train = np.asarray(np.arange(16) % 4 if y is None else y, dtype=y_dtype)
    y_test = np.unique(y_train)
    path = folder / "data.npz"
    np.savez(path, x_train=rng.normal(size=(16, 3)).astype(np.float32), y_train=y_train,
             x_test=rng.normal(size=(len(y_test), 3)).astype(np.float32), y_test=y_test)
    return ["--benchmark", "split_npz", "--data", str(path), *FLAT]


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.tobytes()


def idx_folder(folder: Path, *, compress: bool = False) -> List[str]:
    """Four MNIST-format files of 4x4 images, labels 0..3."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    labels = (np.arange(16) % 4).astype(np.uint8)
    for split in ("train", "t10k"):
        for kind, array in (("images-idx3", rng.integers(0, 256, (16, 4, 4), dtype=np.uint8)),
                            ("labels-idx1", labels)):
            data = _idx(array)
            path = folder / f"{split}-{kind}-ubyte{'.gz' if compress else ''}"
            path.write_bytes(gzip.compress(data) if compress else data)
    return ["--benchmark", "split_fashion_mnist", "--data", str(folder), *FLAT]


def cifar_archive(folder: Path, *, member_bytes: int = 0) -> List[str]:
    """A CIFAR-10 archive of 2 images per batch (Python 3 pickles); with ``member_bytes``,
    data_batch_1 is replaced by that many zero bytes (a tar bomb: tiny compressed)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    path = folder / "cifar-10-python.tar.gz"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    with tarfile.open(path, "w:gz") as tar:
        for i, name in enumerate(names):
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            if member_bytes and name == "data_batch_1":
                info.size = member_bytes
                tar.addfile(info, _Zeros(member_bytes))
                continue
            batch = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8),
                     b"labels": [(2 * i) % 10, (2 * i + 1) % 10]}
            data = pickle.dumps(batch, protocol=2)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return ["--benchmark", "split_cifar10", "--data", str(path), "--width", "2", *FLAT]


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


# ------------------------------------------------------------------ bombs
def gzip_of_zeros_as_images(folder: Path, mib: int) -> List[str]:
    """Fashion-MNIST images declaring 60,000 x 28 x 28 (47 MB), followed by ``mib`` MiB of
    zeros: a gzip of about mib KiB (the adversarial round's 39 MB file was 7.4 GB)."""
    args = idx_folder(folder, compress=True)
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb", compresslevel=6) as f:
        f.write(bytes([0, 0, 8, 3]) + struct.pack(">III", 60000, 28, 28))
        chunk = bytes(1 << 20)
        for _ in range(mib):
            f.write(chunk)
    return args


def idx_header_65536_to_the_4th(folder: Path) -> List[str]:
    args = idx_folder(folder)
    (folder / "t10k-images-idx3-ubyte").write_bytes(
        bytes([0, 0, 8, 4]) + struct.pack(">IIII", *[65536] * 4) + bytes(64))
    return args


def idx_linked_to_dev_zero(folder: Path) -> List[str]:
    args = idx_folder(folder)
    os.unlink(folder / "train-images-idx3-ubyte")
    os.symlink("/dev/zero", folder / "train-images-idx3-ubyte")
    return args


def npz_declaring_a_huge_array(folder: Path) -> List[str]:
    """x_train's .npy header declares 10**9 x 10**6 float32 (4 PB); 64 bytes follow."""
    args = npz(folder)
    path = folder / "data.npz"
    arrays = dict(np.load(path))
    forged = io.BytesIO()
    np.lib.format.write_array_header_1_0(forged, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10**9, 10**6)})
    forged.write(bytes(64))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x_train.npy", forged.getvalue())
        for key in ("y_train", "x_test", "y_test"):
            buffer = io.BytesIO()
            np.save(buffer, arrays[key])
            archive.writestr(f"{key}.npy", buffer.getvalue())
    return args


def npz_with_huge_labels(folder: Path) -> List[str]:
    """Labels 0, 3, 500,000,000 and 2**40 in a 2 KB archive (a lookup table as long as the
    largest label would take 8.8 TB): they must run, mapped to 0..3."""
    return npz(folder, y=[0, 3, 500_000_000, 2**40] * 4)


def npz_with_a_uint64_label_of_2_to_the_63(folder: Path) -> List[str]:
    return npz(folder, y=[0, 1, 2, 2**63] * 4, y_dtype=np.uint64)


# ----------------------------------------------------------- special files
def replace_with_fifo(path: Path) -> None:
    if path.exists() or path.is_symlink():
        path.unlink()
    os.mkfifo(path)
