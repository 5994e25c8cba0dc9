"""Slab: the preallocated rows a replay memory stores its samples in, in RAM or in files.

A policy built on a slab writes each stored sample into one of ``capacity`` rows
and exposes its groups as index views of the slab, so updating the memory never
copies what stays, reading it is one gather, and every group shares one storage
(concatenating groups for a mixed batch costs an index array, not a copy).
With ``directory`` set the rows are memory-mapped files there (see
:mod:`clreplay.replay.memmap`); the code path is the same, so results are
bit-identical to the in-RAM slab.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import List, Optional

import torch
from torch import Tensor

from clreplay._validation import check_positive_int
from clreplay.data.dataset import ClassificationDataset
from clreplay.replay.memmap import MappedFile, check_directory, mapped_empty

# Mapped slabs by the address of their sample storage, so that any view of one
# (subsets and concatenations build new datasets) finds the slab it reads from.
_MAPPED: "weakref.WeakValueDictionary[int, Slab]" = weakref.WeakValueDictionary()


def _storage_address(tensor: Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


class MappedDataset(ClassificationDataset):
    """A view of a memory-mapped slab whose batches are read from the file, not the mapping.

    Every dataset derived from it (subsets, concatenations of views of the same
    slab) is one too, so a batch source gathering rows from the memory reads them
    with ``preadv`` and the resident set stays at the batch's size (see
    :mod:`clreplay.replay.memmap`), without the batch source knowing about files.
    """

    _slab_ref: Optional["weakref.ref[Slab]"] = None

    def _init(self, storage, y_all, t_all, indices, transform) -> None:
        super()._init(storage, y_all, t_all, indices, transform)
        slab = _MAPPED.get(_storage_address(storage)) if isinstance(storage, Tensor) else None
        # A copy made from this view (its own RAM storage) is not the slab's. A weak
        # reference: the slab holds a view of itself, and must not be kept alive by it.
        self._slab_ref = weakref.ref(slab) if slab is not None and slab.x is not None and (
            _storage_address(slab.x) == _storage_address(storage)) else None

    def x_from_rows(self, rows: Tensor) -> Tensor:
        slab = self._slab_ref() if self._slab_ref is not None else None
        if slab is None or self.transform is not None:
            return super().x_from_rows(rows)
        return slab.read_x(rows)


class Slab:
    """``capacity`` rows of samples ``x``, labels ``y`` and task labels ``t``.

    Rows are allocated on the first :meth:`write`, shaped like its samples (on
    their device, or on the CPU when mapped). ``directory`` puts ``x``, ``y`` and
    ``t`` in memory-mapped files there. Samples are then written and (by the
    slab's :class:`MappedDataset` views) read row by row through the file, so
    neither grows the resident set; the labels, 16 bytes a sample, are read
    through their mapping.

    >>> slab = Slab(4)
    >>> slab.write(torch.tensor([2, 0]), torch.ones(2, 3), torch.tensor([7, 8]), torch.zeros(2))
    >>> view = slab.dataset().subset([2, 0])
    >>> view.targets.tolist(), view.get_batch([0])[0].tolist()
    ([7, 8], [[1.0, 1.0, 1.0]])
    """

    def __init__(
        self,
        capacity: int,
        *,
        directory=None,
    ) -> None:
        self.capacity = check_positive_int("capacity", capacity)
        self.directory: Optional[Path] = (
            None if directory is None else check_directory("memmap_dir", directory)
        )
        self.x: Optional[Tensor] = None
        self.y: Optional[Tensor] = None
        self.t: Optional[Tensor] = None
        self._files: List[MappedFile] = []
        self._full: Optional[ClassificationDataset] = None

    @property
    def is_mapped(self) -> bool:
        return self.directory is not None

    @property
    def allocated(self) -> bool:
        return self.x is not None

    def _allocate(self, x: Tensor) -> None:
        shape = (self.capacity, *x.shape[1:])
        if self.directory is None:
            self.x = torch.zeros(shape, dtype=x.dtype, device=x.device)
            self.y = torch.zeros(self.capacity, dtype=torch.long, device=x.device)
            self.t = torch.zeros(self.capacity, dtype=torch.long, device=x.device)
            self._full = ClassificationDataset(self.x, self.y, self.t)
            return
        parts = [mapped_empty(self.directory, shape, x.dtype)]
        parts += [mapped_empty(self.directory, (self.capacity,), torch.long) for _ in range(2)]
        (self.x, fx), (self.y, fy), (self.t, ft) = parts
        self._files = [fx, fy, ft]
        _MAPPED[_storage_address(self.x)] = self
        self._full = MappedDataset(self.x, self.y, self.t)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu") if self.x is None else self.x.device

    def write(self, rows, x: Tensor, y: Tensor, t: Tensor) -> None:
        """Store samples ``x`` with labels ``y``, ``t`` at ``rows`` (a slice or a LongTensor)."""
        if self.x is None:
            self._allocate(x)
        elif x.shape[1:] != self.x.shape[1:] or x.dtype != self.x.dtype:
            raise ValueError(
                f"samples must have shape {tuple(self.x.shape[1:])} and dtype {self.x.dtype} like "
                f"those stored, got shape {tuple(x.shape[1:])} and dtype {x.dtype}"
            )
        device = self.x.device
        if isinstance(rows, slice):
            if self._files:
                self._files[0].write_rows(torch.arange(rows.start, rows.stop), x.to(device))
            else:
                self.x[rows].copy_(x)
            self.y[rows].copy_(y)
            self.t[rows].copy_(t)
        else:
            rows = rows.to(device)
            if self._files:
                self._files[0].write_rows(rows, x.to(device))
            else:
                self.x.index_copy_(0, rows, x.to(device))
            self.y.index_copy_(0, rows, y.to(device, torch.long))
            self.t.index_copy_(0, rows, t.to(device, torch.long))

    def read_x(self, rows: Tensor) -> Tensor:
        """The samples at ``rows``, stacked: read from the file when mapped, else gathered."""
        if not self._files:
            return self.x.index_select(0, rows)
        out = torch.empty((len(rows), *self.x.shape[1:]), dtype=self.x.dtype)
        return self._files[0].read_rows(rows, out)

    def dataset(self) -> ClassificationDataset:
        """All rows as one dataset; groups are its subsets (views, updated in place)."""
        if self._full is None:
            raise ValueError("the slab must hold samples before it is read, got an empty slab")
        return self._full

    def prefix(self, n: int) -> ClassificationDataset:
        """The first ``n`` rows as a compact dataset (a view, updated in place)."""
        if n == self.capacity:
            return self.dataset()
        kind = MappedDataset if self._files else ClassificationDataset
        return kind(self.x[:n], self.y[:n], self.t[:n])

    def release(self) -> None:
        """Give back the pages of a mapped slab made resident through its mapping
        (by tensor operations on the storage itself, e.g. a checkpoint's copy);
        a no-op in RAM."""
        for f in self._files:
            f.release()
