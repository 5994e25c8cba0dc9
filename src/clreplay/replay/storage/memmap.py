"""Memory-mapped tensors: a replay memory whose samples live in files, not in RAM.

A tensor made by :func:`mapped_empty` is an ordinary CPU tensor whose bytes are
a shared mapping of a file in a given folder: every tensor operation works on
it unchanged (so results are bit-identical to an in-RAM tensor holding the same
values), and the kernel pages it in and out as needed, so it can be larger than
RAM.

Pages a process touches through a mapping count in its resident set, and a
kernel with large page-cache folios maps up to 2 MiB around every faulting page
(measured: one random 3 KiB row read maps ~2 MiB). So the hot path of a replay
memory, gathering scattered rows, does not go through the mapping:
:meth:`MappedFile.read_rows` and :meth:`MappedFile.write_rows` copy rows with
``preadv``/``pwritev`` between the file (the page cache, shared with the
mapping) and ordinary tensors, which keeps the resident set at the size of the
batch. :meth:`MappedFile.release` gives back whatever the mapping did make
resident.
"""

from __future__ import annotations

import mmap
import os
import tempfile
import weakref
from math import prod
from pathlib import Path
from typing import List, Sequence, Tuple

import torch
from torch import Tensor

from clreplay.replay.storage.columns import ColumnSpec, ColumnStorage, nbytes_of


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def check_directory(name: str, value) -> Path:
    """``value`` as a folder path (created if missing), or a TypeError/ValueError naming ``name``."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a folder path (str or os.PathLike), got {type(value).__name__}")
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name} must be a folder, got the file {str(path)!r}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _runs(rows: List[int]) -> List[Tuple[int, int, int]]:
    """``(first position, first row, length)`` of each run of consecutive rows."""
    runs, start = [], 0
    for k in range(1, len(rows) + 1):
        if k == len(rows) or rows[k] != rows[k - 1] + 1:
            runs.append((start, rows[start], k - start))
            start = k
    return runs


def _bytes_of(tensor: Tensor) -> memoryview:
    """The bytes of a contiguous CPU tensor, writable (any dtype)."""
    return memoryview(tensor.reshape(-1).view(torch.uint8).numpy())


class MappedFile:
    """One scratch file in ``directory``, mapped into memory (read and write, shared).

    The file's name is removed as soon as it is mapped: the open descriptor and
    the mapping keep its blocks, and the kernel frees them when the process ends,
    however it ends. So a run killed with SIGKILL leaves no file behind, and
    tensors made from it stay valid for as long as they live.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     f = MappedFile(folder, 24)
    ...     t = f.tensor(torch.int32, (3, 2))
    ...     f.write_rows(torch.tensor([2, 0]), torch.tensor([[5, 6], [7, 8]], dtype=torch.int32))
    ...     f.release()  # pages leave the resident set; the values stay
    ...     t.tolist(), f.read_rows(torch.tensor([2]), torch.empty(1, 2, dtype=torch.int32)).tolist()
    ([[7, 8], [0, 0], [5, 6]], [[5, 6]])
    """

    def __init__(self, directory, nbytes: int, *, prefix: str = "clreplay-memory-") -> None:
        folder = check_directory("directory", directory)
        fd, path = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".bin")
        self.path, self._fd = path, fd
        self._finalizer = weakref.finalize(self, _close, fd)
        try:
            self.nbytes = int(nbytes)
            # An mmap cannot be empty: a 0-byte tensor still maps one byte. The file
            # is sparse: blocks are taken only where rows are written.
            os.ftruncate(fd, max(self.nbytes, 1))
            self._mmap = mmap.mmap(fd, max(self.nbytes, 1), access=mmap.ACCESS_WRITE)
        finally:
            os.unlink(path)

    def grow(self, nbytes: int) -> None:
        """Extend the file to ``nbytes`` (sparse: no block is taken) and map it again.

        Tensors made before keep the old mapping of the same file, so they still read
        and write the same bytes; :meth:`tensor` spans the new size.
        """
        nbytes = int(nbytes)
        if nbytes <= self.nbytes:
            return
        os.ftruncate(self._fd, nbytes)
        self._mmap = mmap.mmap(self._fd, nbytes, access=mmap.ACCESS_WRITE)
        self.nbytes = nbytes

    def tensor(self, dtype: torch.dtype, shape: Sequence[int]) -> Tensor:
        """A tensor of ``dtype`` and ``shape`` over the whole file (zeros until written)."""
        count = prod(shape)
        if count * torch.empty((), dtype=dtype).element_size() != self.nbytes:
            raise ValueError(
                f"shape {tuple(shape)} of {dtype} must fill the file's {self.nbytes} bytes"
            )
        if count == 0:
            return torch.empty(tuple(shape), dtype=dtype)
        return torch.frombuffer(self._mmap, dtype=dtype, count=count).view(tuple(shape))

    def read_rows(self, rows: Tensor, out: Tensor) -> Tensor:
        """Rows ``rows`` of the file's tensor (rows of ``out``'s size), read into ``out``."""
        self._transfer(rows, out, os.preadv, "read from")
        return out

    def write_rows(self, rows: Tensor, values: Tensor) -> None:
        """Write the rows of ``values`` at rows ``rows`` of the file's tensor."""
        self._transfer(rows, values.contiguous(), os.pwritev, "write to")

    def _transfer(self, rows: Tensor, buffer_tensor: Tensor, call, what: str) -> None:
        """``preadv``/``pwritev`` between rows of the file and ``buffer_tensor``, one call
        per run of consecutive rows."""
        rows_list = rows.tolist()
        if not rows_list:
            return
        row_bytes = buffer_tensor.nbytes // len(rows_list)
        buffer = _bytes_of(buffer_tensor)
        for position, row, length in _runs(rows_list):
            size = length * row_bytes
            piece = buffer[position * row_bytes : position * row_bytes + size]
            if call(self._fd, [piece], row * row_bytes) != size:
                raise OSError(f"short {what} {self.path} at row {row}")

    def release(self) -> None:
        """Give the mapped pages back to the kernel: the resident set shrinks, the data stays.

        On a shared file mapping, ``MADV_DONTNEED`` only drops this process's page
        table entries; written pages stay in the page cache (and reach the file),
        so the next read sees the same values. A no-op where madvise is missing.
        """
        if hasattr(mmap, "MADV_DONTNEED"):
            self._mmap.madvise(mmap.MADV_DONTNEED)


def mapped_empty(directory, shape: Sequence[int], dtype: torch.dtype) -> Tuple[Tensor, MappedFile]:
    """A CPU tensor of ``shape`` and ``dtype`` backed by a new file in ``directory``."""
    shape = tuple(int(s) for s in shape)
    nbytes = prod(shape) * torch.empty((), dtype=dtype).element_size()
    mapped = MappedFile(directory, nbytes)
    return mapped.tensor(dtype, shape), mapped


class MemmapStorage(ColumnStorage):
    """Columns in memory-mapped files in ``directory``, for memories larger than RAM.

    Each column is one :class:`MappedFile` (its name removed at once, so no run leaves
    a file behind), grown with the rows written like a storage in RAM: a memory of
    ``capacity`` rows holding a thousand samples takes a thousand rows of address
    space and of disk, not ``capacity``. Rows are written with ``pwritev`` (a full disk
    is an ``OSError``, never a ``SIGBUS`` from a write through the mapping) and rows of
    multi-dimensional columns read with ``preadv`` (the resident set stays at a batch);
    the label columns are small and are read through the mapping.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     storage = MemmapStorage(10**9, folder)
    ...     storage.set(torch.tensor([0, 2]), {"x": torch.ones(2, 3)})
    ...     storage.get("x", torch.tensor([2, 1])).tolist(), storage.files["x"].nbytes
    ([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], 192)
    """

    def __init__(self, capacity: int, directory) -> None:
        super().__init__(capacity)
        self.directory = check_directory("memmap_dir", directory)
        self.files: dict = {}

    def _new_column(self, name: str, rows: int, spec: ColumnSpec, device: torch.device) -> Tensor:
        mapped = self.files[name] = MappedFile(self.directory, nbytes_of((rows, *spec.shape), spec.dtype))
        self._fill(mapped, 0, rows, spec)
        return mapped.tensor(spec.dtype, (rows, *spec.shape))

    @staticmethod
    def _fill(mapped: "MappedFile", start: int, stop: int, spec: ColumnSpec) -> None:
        """Rows ``[start, stop)`` take the column's fill (a new file reads zeros)."""
        if spec.fill != 0 and stop > start:
            mapped.write_rows(torch.arange(start, stop),
                              torch.full((stop - start, *spec.shape), spec.fill, dtype=spec.dtype))

    def _grow(self, needed: int) -> None:
        """Extend every column's file (sparse: no copy, no block taken) and map it again."""
        held = self.rows_allocated
        if needed <= held:
            return
        rows = self._grown_rows(needed)
        for name, spec in self.specs.items():
            mapped = self.files[name]
            mapped.grow(nbytes_of((rows, *spec.shape), spec.dtype))
            self._fill(mapped, held, rows, spec)
            self.columns[name] = mapped.tensor(spec.dtype, (rows, *spec.shape))

    def _write(self, name: str, rows: Tensor, values: Tensor) -> None:
        # Through the file, never the mapping: a full disk is then an OSError, not a SIGBUS.
        self.files[name].write_rows(rows, values)

    def _read(self, name: str, rows: Tensor) -> Tensor:
        column = self.columns[name]
        rows = rows.cpu()
        if column.dim() > 1:
            out = torch.empty((len(rows), *column.shape[1:]), dtype=column.dtype)
            return self.files[name].read_rows(rows, out)
        return column.index_select(0, rows)

    def release(self) -> None:
        for mapped in self.files.values():
            mapped.release()
