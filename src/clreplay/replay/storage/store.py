"""MemoryStore: where a storage policy's decisions are applied.

Policies *decide*: for each group, which samples it keeps and in which order, as
index tensors (:class:`GroupPlan`). The store *applies* the decision on its
:class:`~clreplay.replay.storage.columns.ColumnStorage`: it writes the new samples
kept into free rows (or, for a plan that names them, into the rows they replace)
and hands back the rows of each group. The spec's ``ext_mem`` dict is a view of
it: each group is a :class:`~clreplay.data.ClassificationDataset` whose index
array holds store rows, so reading the memory is one gather and never a copy.

The columns are ``x`` (the samples), ``y`` (class labels), ``t`` (task labels),
``origin`` (the experience each sample came from) and any column a method
registers (``logits`` for DER, ``features`` for latent replay, ...). A method
computes those values itself and hands them over with the samples, or updates
stored rows later (:meth:`MemoryStore.update`); the store never runs a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Hashable, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from clreplay._validation import check_positive_int
from clreplay.data.dataset import ClassificationDataset
from clreplay.replay.storage import checksum
from clreplay.replay.storage.columns import ColumnSpec, TensorStorage
from clreplay.replay.storage.memmap import MemmapStorage

#: The columns every store has; others are registered by name.
CORE_COLUMNS = ("x", "y", "t", "origin")


@dataclass
class GroupPlan:
    """What one group keeps: ``keep`` indexes the candidates ``new`` then ``old``.

    ``new`` are positions in the new data, ``old`` store rows; ``keep[i] < len(new)``
    keeps the new sample ``new[keep[i]]``, otherwise the stored row
    ``old[keep[i] - len(new)]``. The group's samples are kept in ``keep``'s order.
    ``keep=None`` keeps the stored rows ``old`` as they are (the cheap, common case
    of a group that only keeps or trims what it had).

    ``at``, when given, names the store rows the kept new samples go to (one per new
    sample kept, in ``keep``'s order), e.g. the rows a reservoir overwrites; otherwise
    the store puts them into its lowest free rows.
    """

    new: Tensor
    old: Tensor
    keep: Optional[Tensor]
    at: Optional[Tensor] = None

    @staticmethod
    def of_rows(rows: Tensor) -> "GroupPlan":
        """A group that keeps stored ``rows``, in that order."""
        return GroupPlan(_EMPTY, rows, None)

    @staticmethod
    def of_new(positions: Tensor) -> "GroupPlan":
        """A group made of the new samples at ``positions``, in that order."""
        return GroupPlan(positions, _EMPTY, torch.arange(len(positions)))

    @staticmethod
    def overwrite(rows: Tensor, positions: Tensor, at: Tensor) -> "GroupPlan":
        """A group whose rows are ``rows`` (in that order) once the new samples at
        ``positions`` are written at the rows ``at`` (rows of ``rows``: replaced in
        place, or added at its end)."""
        return GroupPlan(positions, rows, None, at)

    def __len__(self) -> int:
        return len(self.old) if self.keep is None else len(self.keep)

    def cut(self, size: int) -> "GroupPlan":
        """The plan keeping only the first ``size`` samples of this one's order."""
        if size >= len(self):
            return self
        if self.at is not None:
            raise ValueError("a plan that overwrites named rows cannot be cut")
        if self.keep is None:
            return GroupPlan(self.new, self.old[:size], None)
        return GroupPlan(self.new, self.old, self.keep[:size])


_EMPTY = torch.empty(0, dtype=torch.long)


class MemoryStore:
    """A replay memory's rows: a column storage (in RAM, or memory-mapped files in
    ``directory``) of at most ``capacity`` rows, and the decisions of a policy applied to it.

    >>> store = MemoryStore(8)
    >>> data = ClassificationDataset(torch.arange(6.).view(3, 2), torch.tensor([4, 5, 6]))
    >>> rows = store.apply({"a": GroupPlan.of_new(torch.tensor([2, 0]))}, data, origin=0)
    >>> rows["a"].tolist(), store.view(rows["a"]).targets.tolist()
    ([0, 1], [6, 4])
    >>> store.read("x", rows["a"]).tolist()
    [[4.0, 5.0], [0.0, 1.0]]
    """

    def __init__(self, capacity: int, *, directory=None) -> None:
        capacity = check_positive_int("capacity", capacity)
        self.storage = TensorStorage(capacity) if directory is None else MemmapStorage(capacity, directory)
        self.transform = None  # the per-sample transform of the data stored, applied on reading
        #: With :meth:`track_writes`, a checksum of every write since (rows and values, in order).
        self.write_digest: Optional[Tensor] = None

    @property
    def capacity(self) -> int:
        return self.storage.capacity

    @property
    def directory(self):
        """The folder of a memory-mapped store's files (None in RAM)."""
        return getattr(self.storage, "directory", None)

    @property
    def size(self) -> int:
        """One past the highest row ever written."""
        return self.storage.size

    @property
    def columns(self) -> Dict[str, Tensor]:
        """The storage's column tensors (empty until samples are stored)."""
        return self.storage.columns

    @property
    def extras(self) -> Dict[str, ColumnSpec]:
        """The columns registered beyond the core ones."""
        return {name: spec for name, spec in self.storage.specs.items() if name not in CORE_COLUMNS}

    @property
    def allocated(self) -> bool:
        return self.storage.allocated

    @property
    def device(self) -> torch.device:
        return self.storage.device

    def track_writes(self) -> None:
        """Keep ``write_digest``, an exact checksum of every write from now on (its rows,
        then every column's values as stored), so that replicas of a memory can be
        compared at each update for the cost of what was written (distributed runs)."""
        self.write_digest = torch.zeros(checksum.K, dtype=torch.float64)

    # ------------------------------------------------------------------ columns
    def register_column(self, name: str, shape: Sequence[int], dtype: torch.dtype, *,
                        fill: float = 0.0) -> None:
        """Add a column (before or after samples are stored: rows stored before read ``fill``)."""
        if name in CORE_COLUMNS:
            raise ValueError(f"name must not be a core column {CORE_COLUMNS}, got {name!r}")
        self.storage.register(name, shape, dtype, fill=fill)

    def ensure_column(self, name: str, shape: Sequence[int], dtype: torch.dtype, *, fill: float = 0.0) -> None:
        """Register the column ``name`` if it is not, or widen it to ``shape`` if it is
        narrower (e.g. the logits of a head that grew: old rows read ``fill`` there).

        >>> store = MemoryStore(4)
        >>> store.ensure_column("logits", (2,), torch.float32)
        >>> store.ensure_column("logits", (3,), torch.float32)
        >>> store.extras["logits"].shape
        (3,)
        """
        spec = self.extras.get(name)
        if spec is None:
            self.register_column(name, shape, dtype, fill=fill)
        elif any(new > old for new, old in zip(shape, spec.shape)):
            self.resize_column(name, tuple(max(new, old) for new, old in zip(shape, spec.shape)))

    def resize_column(self, name: str, shape: Sequence[int]) -> None:
        """Give the column ``name`` a new per-row ``shape`` (see
        :meth:`~clreplay.replay.storage.columns.ColumnStorage.resize`)."""
        if name not in self.extras:
            raise ValueError(f"name must be a registered extra column {sorted(self.extras)}, got {name!r}")
        self.storage.resize(name, shape)

    # ---------------------------------------------------------- reading, writing
    def _digest(self, rows: Tensor, values: Mapping[str, Tensor]) -> None:
        if self.write_digest is None:
            return
        digest = checksum.digest_rows("rows", rows)
        for name, value in values.items():
            digest = digest.to(value.device) + checksum.digest_rows(name, value)
        self.write_digest = checksum.chain(self.write_digest.to(digest.device),
                                           checksum.combine(digest, "write"))

    def write(self, rows: Tensor, values: Mapping[str, Tensor]) -> None:
        """Store new samples at ``rows``: ``values`` holds ``x``, ``y``, ``t``, ``origin`` and
        any registered column (the others read their fill at those rows)."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        if rows.numel() == 0:
            return
        missing = [name for name in CORE_COLUMNS if name not in values]
        if missing:
            raise KeyError(f"values must hold every core column {CORE_COLUMNS}, missing {missing}")
        x = values["x"]
        storage = self.storage
        if "x" not in storage.specs:  # the first samples fix the shape and dtype of x
            storage.register("x", tuple(x.shape[1:]), x.dtype)
            for name in CORE_COLUMNS[1:]:
                storage.register(name, (), torch.long)
        elif tuple(x.shape[1:]) != storage.specs["x"].shape or x.dtype != storage.specs["x"].dtype:
            spec = storage.specs["x"]
            raise ValueError(
                f"samples must have shape {spec.shape} and dtype {spec.dtype} like those stored, "
                f"got shape {tuple(x.shape[1:])} and dtype {x.dtype}"
            )
        storage.set(rows, values)
        self._digest(rows, {name: storage.get(name, rows) for name in storage.specs}
                     if self.write_digest is not None else {})

    def update(self, rows: Tensor, values: Mapping[str, Tensor]) -> None:
        """Change the columns in ``values`` (any subset, e.g. ``{"logits": ...}``) at
        stored ``rows``; the samples and the other columns stay. (Rows on an accelerator,
        e.g. a replayed segment's, come from the store's own views and are not checked
        on the host, which would wait for the device.)"""
        rows = torch.as_tensor(rows, dtype=torch.long)
        self.storage.update(rows, values)
        if self.write_digest is not None and rows.numel():
            self._digest(rows, {name: self.storage.get(name, rows) for name in sorted(values)})

    def read(self, name: str, rows: Tensor) -> Tensor:
        """Column ``name`` at store ``rows``, stacked (read from the file when mapped)."""
        return self.storage.get(name, rows)

    def read_x(self, rows: Tensor) -> Tensor:
        """The samples at ``rows``, with the stored data's transform applied if it has one."""
        if self.transform is None:
            return self.read("x", rows)
        return self.view(rows).x_from_rows(rows)

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

    def is_view(self, dataset: ClassificationDataset) -> bool:
        """Whether ``dataset`` is a view of this store's columns (nothing is read)."""
        return (self.allocated and dataset.storage is self.columns["x"]
                and dataset.targets_storage is self.columns["y"])

    def rows_of(self, dataset: ClassificationDataset) -> Optional[Tensor]:
        """Store rows of ``dataset`` if it is a view of this store's columns, else None (on
        the host: for a policy's decisions, which are made there)."""
        return dataset.indices.cpu() if self.is_view(dataset) else None

    # ------------------------------------------------------------------ updates
    def apply(
        self,
        plans: Mapping[Hashable, GroupPlan],
        new: Optional[ClassificationDataset],
        *,
        origin,
        columns: Optional[Mapping[str, Tensor]] = None,
    ) -> Dict[Hashable, Tensor]:
        """Carry out a policy's decision; returns each group's store rows, in plan order.

        ``plans`` names every group the memory keeps (a stored row that no plan keeps
        is freed, unless a plan names rows of its own with ``at``). New samples kept by
        a plan are read from ``new`` (a dataset, or a mini-batch ``(x, y, t)``) once and
        written into the rows the plan names, or else the lowest free rows, in plan
        order, with ``origin`` (an int, or one per position of ``new``) and the
        ``columns`` given for them (values aligned with ``new``; columns not given read
        their fill). Stored rows that stay are not touched.
        """
        kept_old: List[Tensor] = []
        picks: Dict[Hashable, Tuple[Tensor, Tensor, Tensor]] = {}
        n_new = 0
        named = any(plan.at is not None for plan in plans.values())
        for key, plan in plans.items():
            if plan.at is not None:
                n_new += len(plan.new)
                continue
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
        if named:
            return self._apply_named(plans, new, origin, columns)
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
        self.write(free[:taken], self.new_values(new, torch.cat(sources), origin, columns))
        return result

    def _apply_named(self, plans, new, origin, columns) -> Dict[Hashable, Tensor]:
        """Plans that name the rows their new samples go to (and only such plans)."""
        if any(plan.at is None and plan.keep is not None for plan in plans.values()):
            raise ValueError("plans that name their rows (at=) cannot be mixed with plans that pick new samples")
        at = [plan.at for plan in plans.values() if plan.at is not None]
        positions = [plan.new for plan in plans.values() if plan.at is not None]
        self.write(torch.cat(at), self.new_values(new, torch.cat(positions), origin, columns))
        return {key: plan.old for key, plan in plans.items()}

    def new_values(self, new, positions: Tensor, origin,
                   columns: Optional[Mapping[str, Tensor]] = None) -> Dict[str, Tensor]:
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
        for name in self.extras:
            if columns is not None and name in columns:
                values[name] = columns[name][positions.to(columns[name].device)]
        return values

    # -------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        """Every column's rows ``[0, size)`` (the same on both backends), and the specs."""
        return self.storage.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned, its columns with it."""
        if self.write_digest is not None:  # replicas loading one state digest alike from here
            self.track_writes()
        self.storage.load_state_dict(state)

    def release(self) -> None:
        """Give back pages of mapped columns made resident through their mappings."""
        self.storage.release()
