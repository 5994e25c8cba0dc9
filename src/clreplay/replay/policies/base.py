"""StoragePolicy: what a replay memory keeps (the base of every storage policy).

A policy *decides* which samples each group keeps and in which order (index
tensors, :class:`~clreplay.replay.storage.GroupPlan`); its
:class:`~clreplay.replay.storage.MemoryStore` *applies* the decision. The spec's
``ext_mem`` dict is rebuilt after every update as views of the store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Dict, Hashable, Mapping, Optional

import torch
from torch import Tensor

from clreplay._seeding import Seeded
from clreplay._validation import check_int, check_positive_int
from clreplay.components import Described
from clreplay.data.dataset import ClassificationDataset
from clreplay.replay.selection.base import ClassExemplarsSelectionStrategy
from clreplay.replay.storage.store import GroupPlan, MemoryStore


class StoragePolicy(Described, Seeded, ABC):
    """A policy to store exemplars in a replay memory.

    Parameters
    ----------
    ext_mem: the replay memory, a dict from group key to a
        :class:`~clreplay.data.ClassificationDataset` of stored samples; the policy
        updates it in place. Samples already in it are adopted (their experience of
        origin unknown: -1).
    mem_size: the most samples the memory holds in total.
    seed: seeds the policy's own generator; None takes the run's stream when a
        plugin sets the policy up (0 when the policy is driven by hand).
    memmap_dir: a folder to keep the memory in memory-mapped files (for memories
        larger than RAM); None keeps it in tensors. The same contents either way.

    A policy is called as ``policy(strategy)`` after each training experience and
    reads ``strategy.experience`` (any object with ``.dataset`` and
    ``.current_experience``), plus ``strategy.model``, ``strategy.device`` and
    ``strategy.eval_mb_size`` when its selection strategy needs the model, so it can
    be driven by hand with a plain object. ``policy(strategy, columns=...)`` stores
    the experience's samples with the values of the store's other columns (aligned
    with ``strategy.experience.dataset``), computed by the method that registered them.
    """

    _seed_name = "storage_policy"
    #: Whether the policy orders its samples with a ``selection_strategy``.
    uses_selection = False

    def __init__(self, ext_mem: Dict, mem_size: int, *, seed: int | None = None,
                 memmap_dir=None) -> None:
        if not isinstance(ext_mem, dict):
            raise TypeError(f"ext_mem must be a dict, got {type(ext_mem).__name__}")
        for key, value in ext_mem.items():
            if not isinstance(value, ClassificationDataset):
                raise TypeError(
                    f"ext_mem[{key!r}] must be a ClassificationDataset, got {type(value).__name__}"
                )
        self.ext_mem: Dict[Hashable, ClassificationDataset] = ext_mem
        self.mem_size = check_positive_int("mem_size", mem_size)
        self.memmap_dir = memmap_dir
        self.store = MemoryStore(self.mem_size, directory=memmap_dir)
        self._init_seed(seed)
        self._commit(self._stored_plans())

    @abstractmethod
    def __call__(self, strategy, *, columns: Optional[Mapping[str, Tensor]] = None, **kwargs) -> None:
        """Store exemplars of ``strategy.experience`` in the replay memory (with the
        values ``columns`` of the store's other columns, one row per sample, if given)."""

    def setup(self, context) -> None:
        """Take the run context (see :class:`~clreplay._seeding.Seeded`); over several
        processes the memory is replicated, and its store digests every write so the
        ranks can compare it at each update (:mod:`~clreplay.replay.storage.consistency`)."""
        super().setup(context)
        if context.world_size > 1 and self.store.write_digest is None:
            self.store.track_writes()

    def __len__(self) -> int:
        """The number of samples stored, over all groups."""
        return sum(len(group) for group in self.ext_mem.values())

    # ------------------------------------------------------------- the engine
    def _stored_rows(self) -> Dict[Hashable, Tensor]:
        """Store rows of every group of ``ext_mem``, adopting groups that are not views
        of the store (put there by hand) into free rows first."""
        rows, foreign = {}, {}
        for key, group in self.ext_mem.items():
            own = self.store.rows_of(group)
            if own is None:
                foreign[key] = group
            else:
                rows[key] = own
        if foreign:
            total = sum(len(g) for g in self.ext_mem.values())
            if total > self.mem_size:
                raise ValueError(
                    f"ext_mem must hold at most mem_size ({self.mem_size}) samples, got {total}"
                )
            data = ClassificationDataset.concat([g for g in foreign.values() if len(g)] or
                                                list(foreign.values()))
            plans, start = {}, 0
            for key, group in self.ext_mem.items():
                if key in foreign:
                    plans[key] = GroupPlan.of_new(torch.arange(start, start + len(group)))
                    start += len(group)
                else:
                    plans[key] = GroupPlan.of_rows(rows[key])
            rows = self.store.apply(plans, data, origin=-1)
        return rows

    def _stored_plans(self) -> Dict[Hashable, GroupPlan]:
        """Plans that keep every group as it is."""
        return {key: GroupPlan.of_rows(rows) for key, rows in self._stored_rows().items()}

    def _commit(self, plans: Mapping[Hashable, GroupPlan], new=None, *, origin=-1,
                columns: Optional[Mapping[str, Tensor]] = None) -> None:
        """Apply ``plans`` in the store and make ``ext_mem`` its views, in plan order
        (``new``: the candidate samples, a dataset or a mini-batch ``(x, y, t)``;
        ``columns``: their values of the store's other columns)."""
        rows = self.store.apply(plans, new, origin=origin, columns=columns)
        self._set_groups(rows)

    def _set_groups(self, rows: Mapping[Hashable, Tensor]) -> None:
        """``ext_mem`` as views of the store's ``rows`` of each group, in that order
        (a group whose rows did not change keeps its view: many groups, little work)."""
        before = dict(self.ext_mem)
        self.ext_mem.clear()
        x = self.store.columns.get("x")
        for key, r in rows.items():
            view = before.get(key)
            if view is None or view.indices is not r or view.storage is not x:
                view = self.store.view(r)
            self.ext_mem[key] = view

    # ------------------------------------------------------------ replay view
    def replay_groups(self) -> Dict[Hashable, ClassificationDataset]:
        """The groups a replay mini-batch balances, keyed by experience.

        By default the memory's own non-empty groups; a policy whose groups are not
        experiences (e.g. classes) regroups its samples by experience of origin.
        """
        return {key: group for key, group in self.ext_mem.items() if len(group) > 0}

    def _groups_by_origin(self) -> Dict[int, ClassificationDataset]:
        """Every stored sample, grouped by experience of origin (ascending; -1 unknown),
        in memory order within a group: one stable sort, not one pass per experience."""
        rows = [g.indices for g in self.ext_mem.values() if len(g) > 0]
        if not rows:
            return {}
        rows = torch.cat(rows)
        origin = self.store.read("origin", rows)
        order = torch.sort(origin, stable=True).indices
        origins, counts = torch.unique_consecutive(origin[order], return_counts=True)
        parts = torch.split(rows[order], counts.tolist())
        return {int(e): self.store.view(part) for e, part in zip(origins.tolist(), parts)}

    def origins(self, key: Hashable) -> Tensor:
        """The experience of origin of each sample of group ``key`` (-1: unknown)."""
        return self.store.read("origin", self.ext_mem[key].indices)

    # ------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        """The store's columns, each group's rows in order, and the generator's state."""
        rows = self._stored_rows()
        return {
            "mem_size": self.mem_size,
            "store": self.store.state_dict(),
            "groups": [(key, r.clone()) for key, r in rows.items()],
            "rng": self._seed_state(),
            "extra": self._extra_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a memory saved by :meth:`state_dict`, in place in ``ext_mem``."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        expected = {"mem_size", "store", "groups", "rng", "extra"}
        if set(state) != expected:
            raise KeyError(
                f"storage policy state must have keys {sorted(expected)}, got {sorted(state)}"
            )
        if state["mem_size"] != self.mem_size:
            raise ValueError(
                f"mem_size of the saved memory ({state['mem_size']}) differs from this "
                f"policy's mem_size ({self.mem_size})"
            )
        total = sum(len(rows) for _, rows in state["groups"])
        if total > self.mem_size:
            raise ValueError(
                f"the saved memory holds {total} samples, more than mem_size ({self.mem_size})"
            )
        self.store.load_state_dict(state["store"])
        self._set_groups({key: rows for key, rows in state["groups"]})
        self._load_seed_state(state["rng"])
        self._load_extra_state(state["extra"])

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass


def check_divisor(adaptive_size, name: str, value) -> tuple[bool, int]:
    """``adaptive_size`` and the fixed divisor ``value`` (named ``name``), checked: the
    divisor must be positive when the size is not adaptive."""
    if not isinstance(adaptive_size, bool):
        raise TypeError(f"adaptive_size must be a bool, got {adaptive_size!r}")
    divisor = check_int(name, value)
    if not adaptive_size and divisor <= 0:
        raise ValueError(f"{name} must be a positive int when adaptive_size=False, got {value!r}")
    return adaptive_size, divisor


def experience_of(strategy):
    """``strategy.experience``, checked for what a policy reads: ``.dataset``, ``.current_experience``."""
    experience = getattr(strategy, "experience", None)
    dataset = getattr(experience, "dataset", None)
    index = getattr(experience, "current_experience", None)
    if not isinstance(dataset, ClassificationDataset) or not isinstance(index, int) or isinstance(index, bool):
        raise TypeError(
            "strategy must have an 'experience' attribute with a ClassificationDataset "
            "'.dataset' and an int '.current_experience', got "
            f"{type(strategy).__name__} with experience={experience!r}"
        )
    return experience


class UsesSelectionStrategy:
    """Mixin for policies that order samples with a ``selection_strategy``.

    The strategy is a public attribute, checked when set and read at every call,
    so it can be swapped between experiences; a strategy without a seed of its own
    draws from the policy's seed, or from the run's stream.
    """

    @property
    def selection_strategy(self) -> ClassExemplarsSelectionStrategy:
        return self._selection_strategy

    @selection_strategy.setter
    def selection_strategy(self, value: ClassExemplarsSelectionStrategy) -> None:
        if not isinstance(value, ClassExemplarsSelectionStrategy):
            raise TypeError(
                "selection_strategy must be a ClassExemplarsSelectionStrategy, "
                f"got {type(value).__name__}"
            )
        self._selection_strategy = value
        self._setup_children()

    def _seeded_children(self):
        selection = getattr(self, "_selection_strategy", None)
        return () if selection is None else (selection,)

    def _order(self, strategy, candidates, n: int, *, complete: bool = False) -> Tensor:
        """The selection order over ``candidates`` (``n`` samples), checked."""
        from clreplay.replay.selection.base import check_sorted_indices

        order = self.selection_strategy.make_sorted_indices(strategy, candidates)
        return check_sorted_indices(order, n, self.selection_strategy, complete=complete)


def check_storage_policy(storage_policy, mem_size: int) -> StoragePolicy:
    """``storage_policy`` if it is a StoragePolicy whose ``mem_size`` is ``mem_size``."""
    if not isinstance(storage_policy, StoragePolicy):
        raise TypeError(
            f"storage_policy must be a StoragePolicy or None, got {type(storage_policy).__name__}"
        )
    if storage_policy.mem_size != mem_size:
        raise ValueError(
            f"storage_policy.mem_size ({storage_policy.mem_size}) must equal mem_size ({mem_size})"
        )
    return storage_policy
