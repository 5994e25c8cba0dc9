"""MemoryStore: the rows of a replay memory, kept as named columns.

Every storage policy keeps its samples in one store: the columns ``x`` (the
samples), ``y`` (class labels), ``t`` (task labels), ``origin`` (the experience
each sample came from) and any extra column a method registers (``logits`` for
DER, ``features`` for latent replay, ...), each with its own per-row shape and
dtype. A policy decides which rows to keep and in which order (index tensors);
the store applies the decision: it writes new samples into free rows and hands
back the rows of each group. The spec's ``ext_mem`` dict is a view of it: each
group is a :class:`~clreplay.data.ClassificationDataset` whose index array holds
store rows, so reading the memory is one gather and never a copy.

Backends: tensors on the device of the first samples written, grown as rows are
needed (never more than twice what is held, never more than ``capacity``), or,
with ``directory``, memory-mapped files of ``capacity`` rows (sparse: disk blocks
are taken as rows are written). Rows of ``x`` and of extra columns in mapped
files are read and written with ``preadv``/``pwritev`` (see
:mod:`clreplay.replay.storage.memmap`), so the resident set stays at a batch.
Both backends run the same code on the same rows: their contents are equal byte
for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Hashable, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from clreplay import distributed as idist
from clreplay._validation import check_positive_int
from clreplay.data.dataset import ClassificationDataset
from clreplay.replay.storage import checksum
from clreplay.replay.storage.memmap import MappedFile, check_directory

#: The columns every store has; extra columns are registered by name.
CORE_COLUMNS = ("x", "y", "t", "origin")
#: Rows of a store in RAM grow at least to this many on the first write.
_MIN_ROWS = 16

#: ``fill(strategy, x) -> Tensor``: an extra column's values for new samples ``x``.
FillFn = Callable[[object, Tensor], Tensor]


@dataclass(frozen=True)
class ColumnSpec:
    """An extra column: per-row ``shape``, ``dtype``, and how new rows are filled.

    ``fill(strategy, x)`` returns the column's values for a batch of new samples
    ``x`` (on the strategy's device) when a policy stores them; None leaves new
    rows at zero unless the caller passes values (e.g. a streaming update).
    """

    shape: Tuple[int, ...]
    dtype: torch.dtype
    fill: Optional[FillFn] = None


@dataclass
class GroupPlan:
    """What one group keeps: ``keep`` indexes the candidates ``new`` then ``old``.

    ``new`` are positions in the new data, ``old`` store rows; ``keep[i] < len(new)``
    keeps the new sample ``new[keep[i]]``, otherwise the stored row
    ``old[keep[i] - len(new)]``. The group's samples are kept in ``keep``'s order.
    ``keep=None`` keeps the stored rows ``old`` as they are (the cheap, common case
    of a group that only keeps or trims what it had).
    """

    new: Tensor
    old: Tensor
    keep: Optional[Tensor]

    @staticmethod
    def of_rows(rows: Tensor) -> "GroupPlan":
        """A group that keeps stored ``rows``, in that order."""
        return GroupPlan(_EMPTY, rows, None)

    @staticmethod
    def of_new(positions: Tensor) -> "GroupPlan":
        """A group made of the new samples at ``positions``, in that order."""
        return GroupPlan(positions, _EMPTY, torch.arange(len(positions)))

    def __len__(self) -> int:
        return len(self.old) if self.keep is None else len(self.keep)

    def cut(self, size: int) -> "GroupPlan":
        """The plan keeping only the first ``size`` samples of this one's order."""
        if size >= len(self):
            return self
        if self.keep is None:
            return GroupPlan(self.new, self.old[:size], None)
        return GroupPlan(self.new, self.old, self.keep[:size])


_EMPTY = torch.empty(0, dtype=torch.long)


class MemoryStore:
    """Named columns of at most ``capacity`` rows, in RAM or in memory-mapped files.

    >>> store = MemoryStore(8)
    >>> data = ClassificationDataset(torch.arange(6.).view(3, 2), torch.tensor([4, 5, 6]))
    >>> rows = store.apply({"a": GroupPlan.of_new(torch.tensor([2, 0]))}, data, origin=0)
    >>> rows["a"].tolist(), store.view(rows["a"]).targets.tolist()
    ([0, 1], [6, 4])
    >>> store.read("x", rows["a"]).tolist()
    [[4.0, 5.0], [0.0, 1.0]]
    """

    def __init__(self, capacity: int, *, directory=None) -> None:
        self.capacity = check_positive_int("capacity", capacity)
        self.directory = None if directory is None else check_directory("memmap_dir", directory)
        self.extras: Dict[str, ColumnSpec] = {}
        self.columns: Dict[str, Tensor] = {}
        self._files: Dict[str, MappedFile] = {}
        self.size = 0  # one past the highest row ever written
        self.transform = None  # the per-sample transform of the data stored, applied on reading
        #: With :meth:`track_writes`, a checksum of every write since (rows and values, in order).
        self.write_digest: Optional[Tensor] = None

    def track_writes(self) -> None:
        """Keep ``write_digest``, an exact checksum of every write from now on (its rows,
        then every column's values as stored), so that replicas of a memory can be
        compared at each update for the cost of what was written (distributed runs)."""
        self.write_digest = torch.zeros(checksum.K, dtype=torch.float64)

    # ------------------------------------------------------------------ columns
    def register_column(self, name: str, shape: Sequence[int], dtype: torch.dtype, *,
                        fill: Optional[FillFn] = None) -> None:
        """Add an extra column (before or after samples are stored: existing rows read 0).

        Registering a name again with the same shape and dtype only replaces ``fill``.
        """
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"name must be an identifier, got {name!r}")
        if name in CORE_COLUMNS:
            raise ValueError(f"name must not be a core column {CORE_COLUMNS}, got {name!r}")
        if not isinstance(dtype, torch.dtype):
            raise TypeError(f"dtype must be a torch.dtype, got {type(dtype).__name__}")
        if fill is not None and not callable(fill):
            raise TypeError(f"fill must be callable or None, got {type(fill).__name__}")
        shape = tuple(check_positive_int(f"shape[{i}]", s) for i, s in enumerate(shape))
        spec = ColumnSpec(shape, dtype, fill)
        old = self.extras.get(name)
        if old is not None and (old.shape, old.dtype) != (shape, dtype):
            raise ValueError(
                f"column {name!r} is registered with shape {old.shape} and dtype {old.dtype}, "
                f"got shape {shape} and dtype {dtype}"
            )
        self.extras[name] = spec
        if self.columns and name not in self.columns:
            self.columns[name] = self._empty(name, (self._rows_held(), *shape), dtype)

    def resize_column(self, name: str, shape: Sequence[int]) -> None:
        """Give the extra column ``name`` a new per-row ``shape`` (e.g. the logits of a
        head that grew): stored rows keep their values where the old and the new shape
        overlap, the rest reads 0. Same dtype and ``fill``; either backend.

        >>> store = MemoryStore(4)
        >>> store.register_column("logits", (2,), torch.float32)
        >>> data = ClassificationDataset(torch.zeros(1, 1), torch.tensor([0]))
        >>> rows = store.apply({0: GroupPlan.of_new(torch.tensor([0]))}, data, origin=0,
        ...                    extras={"logits": torch.tensor([[1.0, 2.0]])})
        >>> store.resize_column("logits", (3,))
        >>> store.read("logits", rows[0]).tolist()
        [[1.0, 2.0, 0.0]]
        """
        spec = self.extras.get(name)
        if spec is None:
            raise ValueError(f"name must be a registered extra column {sorted(self.extras)}, got {name!r}")
        shape = tuple(check_positive_int(f"shape[{i}]", s) for i, s in enumerate(shape))
        if len(shape) != len(spec.shape):
            raise ValueError(
                f"shape must keep the {len(spec.shape)} dimension(s) of column {name!r} {spec.shape}, "
                f"got {shape}"
            )
        self.extras[name] = ColumnSpec(shape, spec.dtype, spec.fill)
        old = self.columns.get(name)
        if old is None or shape == spec.shape:
            return
        new = self._empty(name, (old.shape[0], *shape), spec.dtype, old.device)
        overlap = (slice(None),) + tuple(slice(0, min(a, b)) for a, b in zip(old.shape[1:], shape))
        new[overlap] = old[overlap]
        self.columns[name] = new

    @property
    def allocated(self) -> bool:
        return "x" in self.columns

    @property
    def device(self) -> torch.device:
        return self.columns["x"].device if self.allocated else torch.device("cpu")

    def _rows_held(self) -> int:
        return self.columns["x"].shape[0] if self.allocated else 0

    def _empty(self, name: str, shape: Tuple[int, ...], dtype: torch.dtype, device=None) -> Tensor:
        if self.directory is None:
            return torch.zeros(shape, dtype=dtype, device=device)
        nbytes = int(torch.Size(shape).numel()) * torch.empty((), dtype=dtype).element_size()
        mapped = MappedFile(self.directory, nbytes)
        self._files[name] = mapped
        return mapped.tensor(dtype, shape)

    def _allocate(self, x: Tensor, rows_needed: int) -> None:
        """Create the columns, shaped like the samples ``x``."""
        device = x.device if self.directory is None else torch.device("cpu")
        n = self.capacity if self.directory is not None else self._grown_size(rows_needed)
        specs = {"x": (tuple(x.shape[1:]), x.dtype), "y": ((), torch.long),
                 "t": ((), torch.long), "origin": ((), torch.long)}
        specs.update({name: (spec.shape, spec.dtype) for name, spec in self.extras.items()})
        self.columns = {name: self._empty(name, (n, *shape), dtype, device)
                        for name, (shape, dtype) in specs.items()}

    def _grown_size(self, rows_needed: int) -> int:
        return min(self.capacity, max(rows_needed, 2 * self._rows_held(), _MIN_ROWS))

    def _ensure_rows(self, rows_needed: int) -> None:
        """Grow the columns in RAM to hold ``rows_needed`` rows (mapped ones hold all)."""
        held = self._rows_held()
        if rows_needed <= held:
            return
        n = self._grown_size(rows_needed)
        for name, column in self.columns.items():
            grown = torch.zeros((n, *column.shape[1:]), dtype=column.dtype, device=column.device)
            grown[:held] = column
            self.columns[name] = grown

    # ---------------------------------------------------------- reading, writing
    def write(self, rows: Tensor, values: Mapping[str, Tensor]) -> None:
        """Write ``values`` (``x``, ``y``, ``t``, ``origin`` and any extras) at store ``rows``.

        Extra columns missing from ``values`` are left as they are.
        """
        rows = torch.as_tensor(rows, dtype=torch.long)
        if rows.numel() == 0:
            return
        x = values["x"]
        top = int(rows.max()) + 1
        if top > self.capacity or int(rows.min()) < 0:
            raise IndexError(f"rows must lie in [0, {self.capacity}), got values up to {top - 1}")
        if not self.allocated:
            self._allocate(x, top)
        elif tuple(x.shape[1:]) != tuple(self.columns["x"].shape[1:]) or x.dtype != self.columns["x"].dtype:
            raise ValueError(
                f"samples must have shape {tuple(self.columns['x'].shape[1:])} and dtype "
                f"{self.columns['x'].dtype} like those stored, got shape {tuple(x.shape[1:])} "
                f"and dtype {x.dtype}"
            )
        self._ensure_rows(top)
        digest = None if self.write_digest is None else checksum.digest_rows("rows", rows)
        for name, value in values.items():
            if name not in self.columns:
                raise KeyError(f"values must name registered columns {sorted(self.columns)}, got {name!r}")
            column = self.columns[name]
            value = torch.as_tensor(value).to(column.device, column.dtype)
            if name in self._files and column.dim() > 1:
                self._files[name].write_rows(rows, value)
            else:
                column.index_copy_(0, rows.to(column.device), value)
            if digest is not None:
                digest = digest.to(value.device) + checksum.digest_rows(name, value)
        if digest is not None:
            self.write_digest = checksum.chain(self.write_digest.to(digest.device),
                                               checksum.combine(digest, "write"))
        self.size = max(self.size, top)

    def read(self, name: str, rows: Tensor) -> Tensor:
        """Column ``name`` at store ``rows``, stacked (read from the file when mapped)."""
        column = self.columns[name]
        if name in self._files and column.dim() > 1:
            out = torch.empty((len(rows), *column.shape[1:]), dtype=column.dtype)
            return self._files[name].read_rows(rows.cpu(), out)
        rows = rows if rows.device == column.device else rows.to(column.device)
        if column.device.type == "cpu":
            return column.index_select(0, rows)
        return column[rows]

    def read_x(self, rows: Tensor) -> Tensor:
        """The samples at ``rows``, with the stored data's transform applied if it has one."""
        if self.transform is None:
            return self.read("x", rows)
        return self.view(rows).x_from_rows(rows)

    def read_extras(self, rows: Tensor) -> Dict[str, Tensor]:
        return {name: self.read(name, rows) for name in self.extras}

    def view(self, rows: Tensor) -> ClassificationDataset:
        """The stored samples at ``rows`` as a dataset (a view: no sample is copied)."""
        if not self.allocated:  # nothing stored yet: only an empty group can be viewed
            if len(rows):
                raise IndexError(f"rows must be stored rows, got {len(rows)} rows of an empty store")
            return ClassificationDataset(torch.empty(0), torch.empty(0, dtype=torch.long))
        c = self.columns
        return ClassificationDataset.from_storage(
            c["x"], c["y"], c["t"], rows.to(c["y"].device), transform=self.transform
        )

    def rows_of(self, dataset: ClassificationDataset) -> Optional[Tensor]:
        """Store rows of ``dataset`` if it is a view of this store's columns, else None."""
        if not self.allocated or dataset.storage is not self.columns["x"]:
            return None
        if dataset.targets_storage is not self.columns["y"]:
            return None
        return dataset.indices.cpu()

    # ------------------------------------------------------------------ updates
    def apply(
        self,
        plans: Mapping[Hashable, GroupPlan],
        new: Optional[ClassificationDataset],
        *,
        origin,
        strategy=None,
        extras: Optional[Mapping[str, Tensor]] = None,
    ) -> Dict[Hashable, Tensor]:
        """Carry out a policy's decision; returns each group's store rows, in plan order.

        ``plans`` names every group the memory keeps (a stored row that no plan keeps
        is freed). New samples kept by a plan are read from ``new`` once and written
        into the lowest free rows, in plan order, with ``origin`` (an int, or one per
        position of ``new``) and their extra columns: from ``extras`` (aligned with
        ``new``) if given, else computed by each column's ``fill`` on the
        ``strategy``'s device. Stored rows that stay are not touched.
        """
        # Rows that stay, per group, and which kept candidates are new.
        kept_old: List[Tensor] = []
        picks: Dict[Hashable, Tuple[Tensor, Tensor]] = {}
        n_new = 0
        for key, plan in plans.items():
            if plan.keep is None:
                kept_old.append(plan.old)
                continue
            keep = torch.as_tensor(plan.keep, dtype=torch.long)
            is_new = keep < len(plan.new)
            old_rows = plan.old[keep[~is_new] - len(plan.new)]
            kept_old.append(old_rows)
            picks[key] = (keep, is_new, old_rows)
            n_new += int(is_new.sum())
        result: Dict[Hashable, Tensor] = {}
        if not n_new:  # nothing to write: every group keeps stored rows
            for key, plan in plans.items():
                result[key] = plan.old if plan.keep is None else picks[key][2]
            return result
        # Free rows: those written before that no plan keeps, then fresh ones. The mask
        # covers the rows written so far, never the whole capacity (which may be huge).
        used = torch.zeros(self.size, dtype=torch.bool)
        if kept_old:
            used[torch.cat(kept_old)] = True
        free = torch.nonzero(~used).flatten()
        kept = self.size - len(free)
        if kept + n_new > self.capacity:
            raise ValueError(f"plans must keep at most capacity ({self.capacity}) rows in all")
        if n_new > len(free):
            free = torch.cat([free, torch.arange(self.size, self.size + n_new - len(free))])
        sources: List[Tensor] = []
        taken = 0
        for key, plan in plans.items():
            if plan.keep is None:
                result[key] = plan.old
                continue
            keep, is_new, old_rows = picks[key]
            count = int(is_new.sum())
            if count == len(keep):
                rows = free[taken : taken + count]
            else:
                rows = torch.empty(len(keep), dtype=torch.long)
                rows[is_new] = free[taken : taken + count]
                rows[~is_new] = old_rows
            sources.append(plan.new[keep[is_new]])
            taken += count
            result[key] = rows
        self.write(free[:taken], self.new_values(new, torch.cat(sources), origin, strategy, extras))
        return result

    def new_values(self, new, positions: Tensor, origin, strategy=None,
                   extras: Optional[Mapping[str, Tensor]] = None) -> Dict[str, Tensor]:
        """Every column's values for the samples at ``positions`` of ``new`` (a dataset, or
        a mini-batch ``(x, y, t)`` of tensors): what :meth:`write` stores for them."""
        if isinstance(new, ClassificationDataset):
            if new.transform is not None:
                if self.transform is not None and self.transform is not new.transform:
                    raise ValueError("datasets stored in one memory must share one transform, got another")
                self.transform = new.transform
            x, y, t = new.raw_batch(positions)
        else:
            x, y, t = (part[positions.to(part.device)] for part in new)
        values = {"x": x, "y": y, "t": t}
        if isinstance(origin, Tensor):
            values["origin"] = origin[positions.to(origin.device)]
        else:
            values["origin"] = torch.full((len(positions),), int(origin), dtype=torch.long)
        for name, spec in self.extras.items():
            if extras is not None and name in extras:
                values[name] = extras[name][positions.to(extras[name].device)]
            elif spec.fill is not None:
                values[name] = _fill(spec, strategy, x)
        return values

    # -------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        """Every column's rows ``[0, size)`` (the same on both backends), and the extras' specs."""
        columns = {name: column[: self.size].clone() for name, column in self.columns.items()}
        self.release()  # the copy read mapped rows through the mapping, if any
        return {
            "size": self.size,
            "columns": columns,
            "extras": {name: (list(spec.shape), str(spec.dtype)) for name, spec in self.extras.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        saved = {name: tuple(shape) for name, (shape, _) in state["extras"].items()}
        mine = {name: spec.shape for name, spec in self.extras.items()}
        if saved != mine:
            raise ValueError(
                f"extra columns of the saved memory ({saved}) differ from this store's ({mine})"
            )
        self.columns, self._files, self.size = {}, {}, int(state["size"])
        if self.write_digest is not None:  # replicas loading one state digest alike from here
            self.track_writes()
        columns = state["columns"]
        if not columns or self.size == 0:
            return
        self._allocate(columns["x"], self.size)
        self.write(torch.arange(self.size), dict(columns))

    def release(self) -> None:
        """Give back pages of mapped columns made resident through their mappings."""
        for mapped in self._files.values():
            mapped.release()


def _fill(spec: ColumnSpec, strategy, x: Tensor) -> Tensor:
    """``spec.fill`` over new samples ``x``, in batches of ``strategy.eval_mb_size`` on its device.

    In a distributed run each rank fills a share of the batches and the values are
    gathered, so every rank stores the same bits.
    """
    device = torch.device(getattr(strategy, "device", "cpu"))
    batch = getattr(strategy, "eval_mb_size", None) or max(len(x), 1)

    def rows(start: int, stop: int) -> Tensor:
        return torch.as_tensor(spec.fill(strategy, x[start:stop].to(device))).detach()

    values = idist.map_batches(rows, len(x), batch, gather=idist.is_distributed(strategy))
    if tuple(values.shape) != (len(x), *spec.shape):
        raise ValueError(
            f"fill must return one row of shape {spec.shape} per sample, got shape {tuple(values.shape)}"
        )
    return values
