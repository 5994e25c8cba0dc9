"""ClassificationDataset: samples, integer labels and task labels over one flat storage.

A dataset is a *storage* (a tensor whose first dimension indexes samples, or any
sized ``torch.utils.data.Dataset``), full label tensors, and one optional index
array saying which storage rows it shows and in which order. A subset composes
index arrays; it never wraps another dataset, so a memory updated a thousand
times reads as fast as a fresh one.
"""

from __future__ import annotations

import reprlib
from typing import Any, Callable, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.utils.data import Dataset

from clreplay._validation import check_int

Batch = Tuple[Tensor, Tensor, Tensor]


def _as_label_tensor(name: str, values: Any, length: int) -> Tensor:
    try:
        tensor = values if isinstance(values, Tensor) else torch.as_tensor(values)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must hold integer labels, got {reprlib.repr(values)}") from None
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer labels, got dtype {tensor.dtype}")
    if tensor.dim() != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {tuple(tensor.shape)}")
    if len(tensor) != length:
        raise ValueError(f"{name} must have one entry per sample ({length}), got {len(tensor)}")
    return tensor.long()


def _as_index_tensor(indices: Any, length: int) -> Tensor:
    # No dtype= here: converting to long would silently truncate float indices.
    try:
        idx = indices if isinstance(indices, Tensor) else torch.as_tensor(indices)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"indices must be integers, got {reprlib.repr(indices)}") from None
    if idx.dim() != 1:
        raise ValueError(f"indices must be one-dimensional, got shape {tuple(idx.shape)}")
    if idx.numel() == 0:
        return idx.long().reshape(0)
    if idx.dtype.is_floating_point or idx.dtype == torch.bool:
        raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
    idx = idx.long()
    low, high = int(idx.min()), int(idx.max())
    if low < -length or high >= length:
        raise IndexError(f"indices must lie in [0, {length}), got values in [{low}, {high}]")
    return torch.where(idx < 0, idx + length, idx)


class ClassificationDataset(Dataset):
    """Samples ``x``, integer labels ``y`` and task labels, indexable as ``ds[i] -> (x, y, t)``.

    Parameters
    ----------
    x:
        A tensor whose first dimension indexes samples, or any sized
        ``torch.utils.data.Dataset`` whose items are ``(x, ...)`` (read sample by
        sample; prefer tensors, which are read by tensor indexing).
    y:
        Integer labels, one per sample.
    task_labels:
        Integer task labels, one per sample, or one int for all; zeros by default.
    transform:
        Optional callable applied to each sample's ``x`` when it is read.

    Examples
    --------
    >>> ds = ClassificationDataset(torch.arange(6.).reshape(3, 2), torch.tensor([0, 1, 1]))
    >>> len(ds), ds.targets.tolist(), ds.task_labels.tolist()
    (3, [0, 1, 1], [0, 0, 0])
    >>> x, y, t = ds[2]
    >>> x.tolist(), int(y), int(t)
    ([4.0, 5.0], 1, 0)
    >>> sub = ds.subset([2, 0]).subset([1])
    >>> sub.targets.tolist(), sub.indices.tolist()
    ([0], [0])
    """

    def __init__(
        self,
        x: Tensor | Dataset,
        y: Any,
        task_labels: Any = None,
        transform: Optional[Callable[[Any], Any]] = None,
    ) -> None:
        if isinstance(x, Tensor):
            if x.dim() == 0:
                raise ValueError("x must have a first dimension indexing samples, got a 0-d tensor")
        elif not isinstance(x, Dataset) or not hasattr(x, "__len__"):
            raise TypeError(f"x must be a Tensor or a sized torch Dataset, got {type(x).__name__}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {type(transform).__name__}")
        n = len(x)
        if isinstance(y, (Tensor, Sequence)) and len(y) != n:
            raise ValueError(f"x and y must have the same length, got len(x)={n} and len(y)={len(y)}")
        y = _as_label_tensor("y", y, n)
        if task_labels is None:
            task_labels = torch.zeros(n, dtype=torch.long)
        elif isinstance(task_labels, int) and not isinstance(task_labels, bool):
            task_labels = torch.full((n,), task_labels, dtype=torch.long)
        task_labels = _as_label_tensor("task_labels", task_labels, n)
        self._init(x, y.to(_device_of(x)), task_labels.to(_device_of(x)), None, transform)

    def _init(self, storage, y_all, t_all, indices, transform) -> None:
        self._storage = storage
        self._y_all = y_all
        self._t_all = t_all
        self._indices = indices  # None means every storage row, in order
        self.transform = transform
        # Labels of a view, gathered once and kept while the label tensors are unchanged:
        # a replay memory overwrites stored rows in place (the reservoir), and a view's
        # labels must be what is stored now. The key is the tensors' version counters,
        # which every in-place write bumps.
        self._labels_cache: Tuple[int, int, Tensor, Tensor] | None = None

    @classmethod
    def _from_parts(cls, storage, y_all, t_all, indices, transform) -> "ClassificationDataset":
        ds = cls.__new__(cls)
        ds._init(storage, y_all, t_all, indices, transform)
        return ds

    @classmethod
    def from_storage(
        cls, x: Tensor, y_all: Tensor, t_all: Tensor, indices: Optional[Tensor] = None, *,
        transform=None,
    ) -> "ClassificationDataset":
        """A view of the rows ``indices`` (None: all, in order) of full tensors of samples,
        labels and task labels, without copying or re-checking them (for stores that
        own such tensors, e.g. a replay memory's columns).

        >>> x, y = torch.arange(6.).view(3, 2), torch.tensor([7, 8, 9])
        >>> ClassificationDataset.from_storage(x, y, torch.zeros(3, dtype=torch.long),
        ...                                    torch.tensor([2, 0])).targets.tolist()
        [9, 7]
        """
        return cls._from_parts(x, y_all, t_all, indices, transform)

    @classmethod
    def from_dataset(
        cls, dataset: Dataset, *, task_labels: Any = None, transform=None
    ) -> "ClassificationDataset":
        """Wrap any sized torch ``Dataset`` that has a ``targets`` attribute.

        Samples are read one by one from ``dataset`` (its items are ``(x, ...)``);
        labels come from ``dataset.targets``. A ClassificationDataset is returned as is.
        """
        if isinstance(dataset, ClassificationDataset):
            return dataset
        if not hasattr(dataset, "targets"):
            raise TypeError(
                f"dataset must have a 'targets' attribute, got {type(dataset).__name__} without one"
            )
        return cls(dataset, torch.as_tensor(dataset.targets), task_labels, transform)

    # ------------------------------------------------------------------ views
    @property
    def is_tensor_backed(self) -> bool:
        """True when samples are rows of one tensor (batches are read by indexing)."""
        return isinstance(self._storage, Tensor)

    @property
    def storage(self):
        """The tensor (or dataset) holding the samples this dataset indexes into."""
        return self._storage

    @property
    def is_compact(self) -> bool:
        """True when the dataset shows every row of its storage in order (it owns its samples)."""
        return self._indices is None

    @property
    def targets_storage(self) -> Tensor:
        """The label tensor of the whole storage (``targets`` are its rows ``indices``)."""
        return self._y_all

    @property
    def indices(self) -> Tensor:
        """Storage rows shown by this dataset, in order (a LongTensor)."""
        if self._indices is None:
            return torch.arange(len(self._storage), device=self._y_all.device)
        return self._indices

    def _view_labels(self) -> Tuple[Tensor, Tensor]:
        key = (self._y_all._version, self._t_all._version)
        cache = self._labels_cache
        if cache is None or cache[:2] != key:
            cache = self._labels_cache = (*key, self._y_all[self._indices], self._t_all[self._indices])
        return cache[2], cache[3]

    @property
    def targets(self) -> Tensor:
        """Class labels, as stored now (a view of a memory reads rows overwritten in place).

        >>> y = torch.tensor([0, 1, 2])
        >>> view = ClassificationDataset.from_storage(torch.zeros(3, 1), y, torch.zeros(3, dtype=torch.long),
        ...                                           torch.tensor([2, 0]))
        >>> view.targets.tolist(), y.index_fill_(0, torch.tensor([2]), 7) is y, view.targets.tolist()
        ([2, 0], True, [7, 0])
        """
        if self._indices is None:
            return self._y_all
        return self._view_labels()[0]

    @property
    def task_labels(self) -> Tensor:
        """Task labels, as stored now (see :attr:`targets`)."""
        if self._indices is None:
            return self._t_all
        return self._view_labels()[1]

    @property
    def device(self) -> torch.device:
        return self._y_all.device

    def __len__(self) -> int:
        # shape[0] rather than len(tensor): Tensor.__len__ is a Python-level wrapper,
        # and policies ask every group's length many times per update.
        if self._indices is not None:
            return self._indices.shape[0]
        storage = self._storage
        return storage.shape[0] if isinstance(storage, Tensor) else len(storage)

    def _row(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for a dataset of {n} samples")
        i = i + n if i < 0 else i
        return i if self._indices is None else int(self._indices[i])

    def _read_x(self, row: int):
        x = self._storage[row]
        if not self.is_tensor_backed:
            x = x[0] if isinstance(x, (tuple, list)) else x
        return x if self.transform is None else self.transform(x)

    def __getitem__(self, i: int):
        if isinstance(i, Tensor):
            i = int(i)
        row = self._row(check_int("index", i))
        return self._read_x(row), self._y_all[row], self._t_all[row]

    def __repr__(self) -> str:
        kind = "tensor" if self.is_tensor_backed else type(self._storage).__name__
        return f"ClassificationDataset({len(self)} samples, storage={kind})"

    def subset(self, indices: Any) -> "ClassificationDataset":
        """The samples at ``indices`` (positions in this dataset), as a flat view."""
        idx = _as_index_tensor(indices, len(self)).to(self.device)
        rows = idx if self._indices is None else self._indices[idx]
        return self._from_parts(self._storage, self._y_all, self._t_all, rows, self.transform)

    def with_task_label(self, task_label: int) -> "ClassificationDataset":
        """A view of the same samples whose task labels all equal ``task_label``."""
        t_all = torch.full_like(self._t_all, check_int("task_label", task_label))
        return self._from_parts(self._storage, self._y_all, t_all, self._indices, self.transform)

    # ---------------------------------------------------------------- batches
    def storage_rows(self, positions: Tensor) -> Tensor:
        """Storage rows of the samples at ``positions`` (one gather, used by batch sources)."""
        return positions if self._indices is None else self._indices[positions]

    def x_from_rows(self, rows: Tensor) -> Tensor:
        """The samples at storage ``rows``, stacked (one gather for tensor storages)."""
        if self.transform is None and isinstance(self._storage, Tensor):
            return _gather(self._storage, rows)
        return torch.stack([torch.as_tensor(self._read_x(int(r))) for r in rows.tolist()])

    def labels_from_rows(self, rows: Tensor) -> Tuple[Tensor, Tensor]:
        """Class and task labels at storage ``rows``."""
        return _gather(self._y_all, rows), _gather(self._t_all, rows)

    def batch_from_rows(self, rows: Tensor) -> Batch:
        """Read the samples at storage ``rows`` as stacked tensors ``(x, y, t)``."""
        return (self.x_from_rows(rows), *self.labels_from_rows(rows))

    def raw_batch(self, positions: Tensor) -> Batch:
        """Stacked ``(x, y, t)`` at ``positions`` as stored, without the per-sample transform."""
        rows = self.storage_rows(positions.to(self.device))
        if isinstance(self._storage, Tensor):
            x = _gather(self._storage, rows)
        else:
            items = [self._storage[int(r)] for r in rows.tolist()]
            x = torch.stack([torch.as_tensor(i[0] if isinstance(i, (tuple, list)) else i) for i in items])
        return (x, *self.labels_from_rows(rows))

    def get_batch(self, positions: Any) -> Batch:
        """Stacked ``(x, y, t)`` of the samples at ``positions`` in this dataset.

        >>> ds = ClassificationDataset(torch.arange(8.).reshape(4, 2), torch.tensor([0, 1, 2, 3]))
        >>> x, y, t = ds.subset([3, 1, 2]).get_batch([0, 2])
        >>> x.tolist(), y.tolist()
        ([[6.0, 7.0], [4.0, 5.0]], [3, 2])
        """
        pos = _as_index_tensor(positions, len(self)).to(self.device)
        return self.batch_from_rows(self.storage_rows(pos))

    # ----------------------------------------------------------------- copies
    def head(self, size: int) -> "ClassificationDataset":
        """The first ``size`` samples (all if fewer) as a dataset that owns them.

        A compact dataset already of that length is returned as is. Cutting a
        compact tensor-backed dataset copies a slice: no index array is built,
        which keeps a policy that trims every group after each experience cheap.

        >>> ds = ClassificationDataset(torch.arange(4.).unsqueeze(1), torch.tensor([0, 1, 2, 3]))
        >>> cut = ds.head(2)
        >>> cut.targets.tolist(), cut.is_compact, cut.storage.shape
        ([0, 1], True, torch.Size([2, 1]))
        """
        size = min(check_int("size", size, minimum=0), len(self))
        if self._indices is not None:
            rows = self._indices[:size]
            return self._from_parts(self._storage, self._y_all, self._t_all, rows, self.transform).copy()
        if size == len(self):
            return self
        if not self.is_tensor_backed:
            return self.subset(torch.arange(size)).copy()
        return self._from_parts(self._storage[:size].clone(), self._y_all[:size].clone(),
                                self._t_all[:size].clone(), None, self.transform)

    def copy(self) -> "ClassificationDataset":
        """A dataset owning contiguous copies of exactly its own samples.

        Non-tensor storages are read sample by sample and stacked, so the copy
        is tensor-backed. The transform is kept and still applied on reading.
        """
        x, y, t = self._own_parts()
        if self._indices is None and self.is_tensor_backed:  # the parts are the storage itself
            x, y, t = x.clone(), y.clone(), t.clone()
        return self._from_parts(x, y, t, None, self.transform)

    def _own_parts(self) -> Tuple[Tensor, Tensor, Tensor]:
        """``(x, y, t)`` tensors of exactly this dataset's samples, each copied at most once.

        They are fresh tensors, except for a compact tensor-backed dataset, whose
        parts are its own storage and labels (callers that need a copy clone them).
        """
        if self._indices is None:
            if self.is_tensor_backed:
                return self._storage, self._y_all, self._t_all
            rows = self.indices
        else:
            rows = self._indices
            if self.is_tensor_backed:  # a gather already makes a new tensor: no clone
                return (_gather(self._storage, rows), _gather(self._y_all, rows),
                        _gather(self._t_all, rows))
        if len(rows) == 0:
            x = torch.empty(0)
        else:
            raw = []
            for r in rows.tolist():
                item = self._storage[r]
                raw.append(torch.as_tensor(item[0] if isinstance(item, (tuple, list)) else item))
            x = torch.stack(raw)
        return x, _gather(self._y_all, rows), _gather(self._t_all, rows)

    def to(self, device: torch.device | str) -> "ClassificationDataset":
        """The same view with a tensor storage and labels moved to ``device``."""
        if not self.is_tensor_backed:
            raise TypeError("to(device) needs a tensor-backed dataset; call copy() first")
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must name a torch device, got {device!r}") from None
        idx = None if self._indices is None else self._indices.to(device)
        return self._from_parts(
            self._storage.to(device), self._y_all.to(device), self._t_all.to(device), idx,
            self.transform,
        )

    @staticmethod
    def concat(datasets: Sequence["ClassificationDataset"]) -> "ClassificationDataset":
        """One flat dataset with the samples of ``datasets`` in order.

        Views of one storage are joined by concatenating their index arrays (no
        copy); otherwise the samples are copied into a new storage.

        >>> base = ClassificationDataset(torch.arange(4.), torch.tensor([0, 1, 0, 1]))
        >>> both = ClassificationDataset.concat([base.subset([3]), base.subset([0, 1])])
        >>> both.targets.tolist(), both.storage is base.storage
        ([1, 0, 1], True)
        """
        datasets = list(datasets)
        if not datasets:
            raise ValueError("datasets must hold at least one dataset, got an empty sequence")
        for i, ds in enumerate(datasets):
            if not isinstance(ds, ClassificationDataset):
                raise TypeError(
                    f"datasets[{i}] must be a ClassificationDataset, got {type(ds).__name__}"
                )
        first = datasets[0]
        if len(datasets) == 1:
            return first
        shared = all(
            ds._storage is first._storage
            and ds._y_all is first._y_all
            and ds._t_all is first._t_all
            and ds.transform is first.transform
            for ds in datasets
        )
        if shared:
            rows = torch.cat([ds.indices for ds in datasets])
            return first._from_parts(first._storage, first._y_all, first._t_all, rows, first.transform)
        # One copy: torch.cat reads compact storages in place and gathers views once.
        copies = [ds._own_parts() for ds in datasets if len(ds) > 0] or [first._own_parts()]
        transform = first.transform if all(ds.transform is first.transform for ds in datasets) else None
        if transform is None and any(ds.transform is not None for ds in datasets):
            raise ValueError(
                "datasets must share one transform to be concatenated, got different transforms"
            )
        return first._from_parts(
            torch.cat([x for x, _, _ in copies]),
            torch.cat([y for _, y, _ in copies]),
            torch.cat([t for _, _, t in copies]),
            None,
            transform,
        )

    # ------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        """Tensors of exactly this dataset's samples (transforms are not saved)."""
        own = self.copy()
        return {"x": own._storage, "y": own._y_all, "task_labels": own._t_all}

    @classmethod
    def from_state_dict(cls, state: dict, *, transform=None) -> "ClassificationDataset":
        missing = {"x", "y", "task_labels"} - set(state)
        if missing:
            raise KeyError(f"dataset state is missing keys {sorted(missing)}")
        return cls(state["x"], state["y"], state["task_labels"], transform)


def _gather(values: Tensor, rows: Tensor) -> Tensor:
    """``values[rows]`` for the non-negative storage rows batch sources pass.

    On the CPU ``index_select`` gives the same tensor as advanced indexing, but a
    1-D gather of 32 rows of 784 floats takes about 3 us instead of 9 (8 instead of
    30 for 128 rows, one thread): that is the hot path of every training step. On
    CUDA advanced indexing was the faster of the two (bench/gpu_check.py).
    """
    if rows.dim() == 1 and values.device.type == "cpu":
        return values.index_select(0, rows)
    return values[rows]


def _device_of(x) -> torch.device:
    return x.device if isinstance(x, Tensor) else torch.device("cpu")
