"""Column storages: named columns of rows, in RAM tensors or memory-mapped files.

A storage holds columns and does nothing else (the model of torchrl's
``TensorStorage`` / ``LazyMemmapStorage``): it never runs a model and never calls
back into anyone. Its contract is small:

* :meth:`ColumnStorage.register` names a column (per-row shape, dtype, and the value
  a row holds until it is written: ``fill``);
* :meth:`ColumnStorage.set` writes *new* samples at rows: the columns given take the
  values given, every other column of those rows goes back to its ``fill`` (a reused
  row never shows what its previous sample stored);
* :meth:`ColumnStorage.update` changes any subset of columns of rows already written
  (X-DER rewrites stored logits, a method refreshes stored features);
* :meth:`ColumnStorage.get` reads a column at rows.

Columns are allocated when the first samples are written, shaped like them, and
grown as rows are needed (at least doubling, never past ``capacity``), so a huge
``capacity`` costs nothing until it is used. :class:`TensorStorage` keeps them in
tensors on the device of the first samples; :class:`~clreplay.replay.storage.memmap.MemmapStorage`
in memory-mapped files. Both run the same code on the same rows: their contents
are equal byte for byte.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Dict, Mapping, Sequence, Tuple

import torch
from torch import Tensor

from clreplay._validation import check_positive_int

#: Rows a storage allocates at least on its first write.
MIN_ROWS = 16


@dataclass(frozen=True)
class ColumnSpec:
    """A column: the ``shape`` of one row, its ``dtype``, and ``fill``, what a row holds
    until a value is written there (e.g. NaN for "no stored logit")."""

    shape: Tuple[int, ...]
    dtype: torch.dtype
    fill: float = 0.0


def check_column_name(name) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be an identifier, got {name!r}")
    return name


def check_rows(rows, capacity: int) -> Tensor:
    """``rows`` as a 1-D LongTensor of rows in ``[0, capacity)``."""
    rows = torch.as_tensor(rows)
    if rows.dtype.is_floating_point or rows.dtype == torch.bool or rows.dim() != 1:
        raise TypeError(f"rows must be a 1-D tensor of ints, got dtype {rows.dtype}, shape {tuple(rows.shape)}")
    return rows.long()


class ColumnStorage(ABC):
    """Named columns of at most ``capacity`` rows (see the module's description).

    >>> storage = TensorStorage(8)
    >>> storage.register("logits", (2,), torch.float32, fill=float("nan"))
    >>> storage.set(torch.tensor([3, 0]), {"x": torch.ones(2, 4), "logits": torch.zeros(2, 2)})
    >>> storage.update(torch.tensor([0]), {"logits": torch.tensor([[1.0, 2.0]])})
    >>> storage.get("logits", torch.tensor([0, 3])).tolist(), storage.size
    ([[1.0, 2.0], [0.0, 0.0]], 4)
    >>> storage.set(torch.tensor([3]), {"x": torch.zeros(1, 4)})   # a new sample: logits back to fill
    >>> storage.get("logits", torch.tensor([3])).isnan().all().item()
    True
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = check_positive_int("capacity", capacity)
        self.specs: Dict[str, ColumnSpec] = {}
        self.columns: Dict[str, Tensor] = {}
        self.size = 0  # one past the highest row ever written
        #: Per column: False once a written row may read its fill (stored without a value,
        #: registered or widened after rows were written). What the host knows, so a reader
        #: can skip looking for fill values on the device.
        self.complete: Dict[str, bool] = {}

    # ------------------------------------------------------------ backends
    @abstractmethod
    def _new_column(self, name: str, rows: int, spec: ColumnSpec, device: torch.device) -> Tensor:
        """A column of ``rows`` rows holding ``spec.fill``."""

    @abstractmethod
    def _write(self, name: str, rows: Tensor, values: Tensor) -> None:
        """Write ``values`` (on the column's device and dtype) at ``rows`` of column ``name``."""

    @abstractmethod
    def _read(self, name: str, rows: Tensor) -> Tensor:
        """Column ``name`` at ``rows``, stacked."""

    def release(self) -> None:
        """Give back what reading through memory mappings made resident (no-op in RAM)."""

    # -------------------------------------------------------------- columns
    def register(self, name: str, shape: Sequence[int], dtype: torch.dtype, *, fill: float = 0.0) -> None:
        """Add the column ``name`` (before or after samples are stored: rows written
        before read ``fill``). Registering it again with the same shape and dtype
        changes nothing but ``fill``; another shape or dtype is a ``ValueError``."""
        check_column_name(name)
        if not isinstance(dtype, torch.dtype):
            raise TypeError(f"dtype must be a torch.dtype, got {type(dtype).__name__}")
        if isinstance(fill, bool) or not isinstance(fill, (int, float)):
            raise TypeError(f"fill must be a number, got {type(fill).__name__}")
        shape = tuple(check_positive_int(f"shape[{i}]", s) for i, s in enumerate(shape))
        old = self.specs.get(name)
        if old is not None and (old.shape, old.dtype) != (shape, dtype):
            raise ValueError(
                f"column {name!r} is registered with shape {old.shape} and dtype {old.dtype}, "
                f"got shape {shape} and dtype {dtype}"
            )
        self.specs[name] = ColumnSpec(shape, dtype, float(fill))
        self.complete.setdefault(name, self.size == 0)
        if self.allocated and name not in self.columns:
            self.columns[name] = self._new_column(name, self.rows_allocated, self.specs[name], self.device)

    def resize(self, name: str, shape: Sequence[int]) -> None:
        """Give column ``name`` a new per-row ``shape`` (e.g. the logits of a head that
        grew): stored values are kept where the old and the new shape overlap, the rest
        reads the column's ``fill``.

        >>> storage = TensorStorage(4)
        >>> storage.register("logits", (2,), torch.float32)
        >>> storage.set(torch.tensor([0]), {"x": torch.zeros(1, 1), "logits": torch.tensor([[1.0, 2.0]])})
        >>> storage.resize("logits", (3,))
        >>> storage.get("logits", torch.tensor([0])).tolist()
        [[1.0, 2.0, 0.0]]
        """
        spec = self.specs.get(name)
        if spec is None:
            raise ValueError(f"name must be a registered column {sorted(self.specs)}, got {name!r}")
        shape = tuple(check_positive_int(f"shape[{i}]", s) for i, s in enumerate(shape))
        if len(shape) != len(spec.shape):
            raise ValueError(
                f"shape must keep the {len(spec.shape)} dimension(s) of column {name!r} {spec.shape}, "
                f"got {shape}"
            )
        if shape == spec.shape:
            return
        new_spec = ColumnSpec(shape, spec.dtype, spec.fill)
        self.specs[name] = new_spec
        self.complete[name] = self.complete.get(name, True) and self.size == 0
        if name not in self.columns:
            return
        rows = torch.arange(self.size)
        old = self._read(name, rows)
        self.columns[name] = self._new_column(name, self.rows_allocated, new_spec, self.device)
        kept = torch.full((self.size, *shape), new_spec.fill, dtype=spec.dtype)
        overlap = (slice(None),) + tuple(slice(0, min(a, b)) for a, b in zip(spec.shape, shape))
        kept[overlap] = old[overlap].cpu()
        if self.size:
            self._write(name, rows.to(self.device), kept.to(self.device))

    @property
    def allocated(self) -> bool:
        return bool(self.columns)

    @property
    def device(self) -> torch.device:
        return next(iter(self.columns.values())).device if self.columns else torch.device("cpu")

    @property
    def rows_allocated(self) -> int:
        return next(iter(self.columns.values())).shape[0] if self.columns else 0

    def _grown_rows(self, needed: int) -> int:
        return min(self.capacity, max(needed, 2 * self.rows_allocated, MIN_ROWS))

    def _allocate(self, needed: int, device: torch.device) -> None:
        rows = self._grown_rows(needed)
        self.columns = {name: self._new_column(name, rows, spec, device) for name, spec in self.specs.items()}

    def _grow(self, needed: int) -> None:
        """Make room for rows ``[0, needed)``: every column grows, keeping its rows."""
        held = self.rows_allocated
        if needed <= held:
            return
        rows, device = self._grown_rows(needed), self.device
        written = torch.arange(self.size, device=device)
        for name, spec in self.specs.items():
            values = self._read(name, written) if self.size else None
            self.columns[name] = self._new_column(name, rows, spec, device)
            if values is not None:
                self._write(name, written, values)

    # ------------------------------------------------------- reading, writing
    def _check_values(self, rows: Tensor, values: Mapping[str, Tensor]) -> Dict[str, Tensor]:
        checked = {}
        for name, value in values.items():
            spec = self.specs.get(name)
            if spec is None:
                raise KeyError(f"values must name registered columns {sorted(self.specs)}, got {name!r}")
            if not isinstance(value, Tensor):
                value = torch.as_tensor(value)
            if value.shape != (len(rows), *spec.shape):
                raise ValueError(
                    f"values[{name!r}] must have shape {(len(rows), *spec.shape)} (one row of "
                    f"{spec.shape} per row written), got {tuple(value.shape)}"
                )
            checked[name] = value
        return checked

    def _bounds(self, rows: Tensor) -> int:
        low, high = (int(v) for v in rows.aminmax())
        if high >= self.capacity or low < 0:
            raise IndexError(f"rows must lie in [0, {self.capacity}), got values from {low} to {high}")
        return high + 1

    def set(self, rows, values: Mapping[str, Tensor]) -> None:
        """Store new samples at ``rows``: the columns in ``values`` take those values, every
        other registered column goes back to its ``fill`` at those rows. A column not
        registered yet is registered from its values (their per-row shape and dtype).
        Columns are allocated on the first call, on the device of the first value."""
        rows = check_rows(rows, self.capacity)
        if rows.numel() == 0:
            return
        for name, value in values.items():
            if name not in self.specs:
                value = torch.as_tensor(value)
                self.register(name, tuple(value.shape[1:]), value.dtype)
        values = self._check_values(rows, values)
        top = self._bounds(rows)
        if not self.allocated:
            self._allocate(top, next(iter(values.values())).device if values else torch.device("cpu"))
        self._grow(top)
        device = self.device
        rows_here = rows.to(device)
        for name, spec in self.specs.items():
            value = values.get(name)
            if value is None:
                value = torch.full((len(rows), *spec.shape), spec.fill, dtype=spec.dtype)
                self.complete[name] = False
            self._write(name, rows_here, value.to(device, spec.dtype))
        self.size = max(self.size, top)

    def update(self, rows, values: Mapping[str, Tensor]) -> None:
        """Change the columns in ``values`` at ``rows``, rows already written (the others
        keep their values)."""
        rows = check_rows(rows, self.capacity)
        if rows.numel() == 0:
            return
        values = self._check_values(rows, values)
        # Rows on an accelerator are not read on the host (that would wait for the device).
        if rows.device.type == "cpu" and self._bounds(rows) > self.size:
            raise IndexError(f"rows must be rows already written (below {self.size}), got "
                             f"{int(rows.max())}; use set() to store new samples")
        rows = rows.to(self.device)
        for name, value in values.items():
            self._write(name, rows, value.to(self.device, self.specs[name].dtype))

    def get(self, name: str, rows: Tensor) -> Tensor:
        """Column ``name`` at ``rows``, stacked."""
        if name not in self.specs:
            raise KeyError(f"name must be a registered column {sorted(self.specs)}, got {name!r}")
        if name not in self.columns:  # nothing stored yet
            if len(rows):
                raise IndexError(f"rows must be stored rows, got {len(rows)} rows of an empty storage")
            spec = self.specs[name]
            return torch.empty((0, *spec.shape), dtype=spec.dtype)
        return self._read(name, rows)

    # ----------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        """Every column's rows ``[0, size)`` and every column's spec (the same on both backends)."""
        rows = torch.arange(self.size)
        columns = {name: self._read(name, rows).clone() for name in self.columns} if self.size else {}
        self.release()
        return {"size": self.size, "specs": {name: (list(spec.shape), str(spec.dtype), spec.fill)
                                             for name, spec in self.specs.items()},
                "columns": columns, "complete": dict(self.complete)}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (specs registered here must match)."""
        saved = {name: tuple(shape) for name, (shape, *_) in state["specs"].items()}
        for name, spec in self.specs.items():
            if name in saved and saved[name] != spec.shape:
                raise ValueError(f"column {name!r} of the saved memory has shape {saved[name]}, "
                                 f"this storage's has {spec.shape}")
        self.columns, self.size = {}, 0
        self.complete = {name: True for name in self.complete}
        for name, (shape, dtype, fill) in state["specs"].items():
            self.specs[name] = ColumnSpec(tuple(shape), getattr(torch, dtype.removeprefix("torch.")),
                                          float(fill))
        size = int(state["size"])
        if size:
            self.set(torch.arange(size), dict(state["columns"]))
        self.complete.update(state["complete"])


class TensorStorage(ColumnStorage):
    """Columns in tensors, on the device of the first samples written (any device).

    >>> storage = TensorStorage(10**9)          # nothing is allocated until rows are written
    >>> storage.set(torch.arange(3), {"x": torch.zeros(3, 2)})
    >>> storage.rows_allocated
    16
    """

    def _new_column(self, name: str, rows: int, spec: ColumnSpec, device: torch.device) -> Tensor:
        return torch.full((rows, *spec.shape), spec.fill, dtype=spec.dtype, device=device)

    def _write(self, name: str, rows: Tensor, values: Tensor) -> None:
        self.columns[name].index_copy_(0, rows, values)

    def _read(self, name: str, rows: Tensor) -> Tensor:
        column = self.columns[name]
        rows = rows if rows.device == column.device else rows.to(column.device)
        if column.device.type == "cpu":  # index_select: the faster gather on the CPU
            return column.index_select(0, rows)
        return column[rows]


def nbytes_of(shape: Sequence[int], dtype: torch.dtype) -> int:
    """Bytes of a tensor of ``shape`` and ``dtype``."""
    return math.prod(shape) * torch.empty((), dtype=dtype).element_size()
