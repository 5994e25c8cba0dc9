"""ParametricStoragePolicy: the memory split evenly over groups of a chosen kind."""

from __future__ import annotations

from typing import Dict, Hashable, List, Optional

import torch
from torch import Tensor

from clreplay._validation import check_choice
from clreplay.data.dataset import ClassificationDataset
from clreplay.replay.allocation import even_sizes
from clreplay.replay.selection import (
    ClassExemplarsSelectionStrategy,
    RandomExemplarsSelectionStrategy,
    check_sorted_indices,
)
from clreplay.replay.slab import Slab
from clreplay.replay.storage import UsesSelectionStrategy, experience_of, group_by_origin
from clreplay.replay.streaming import StreamingStoragePolicy

GROUPBY = (None, "class", "experience", "task")


class ParametricStoragePolicy(UsesSelectionStrategy, StreamingStoragePolicy):
    """Memory split evenly over groups, each group kept in the order of a selection strategy.

    ``groupby`` says what a group is: ``None`` (one group, key 0), ``"class"``
    (keyed by class label), ``"experience"`` (keyed by experience index) or
    ``"task"`` (keyed by task label). On each update the new samples are split
    into their groups; in every group that receives samples, the new samples
    followed by those already stored are put in the order given by
    ``selection_strategy.make_sorted_indices``. The capacity is then split with
    :func:`even_sizes` over the groups in the order they first appeared (an even
    share each, the remainder one sample each to the newest groups, capacity a
    small group cannot use redistributed to the others), and every group keeps
    that many samples from the front of its order. Groups that receive nothing
    keep a prefix of their order, without being re-ordered.

    The samples live in ``mem_size`` preallocated rows (in RAM, or memory-mapped
    files in ``memmap_dir``); groups are index views of them. Each sample's
    experience of origin is recorded, so replay balances over experiences
    (:meth:`replay_groups`) whatever the grouping.

    Parameters
    ----------
    ext_mem: the replay memory dict (groups already in it are adopted, their
        origin unknown: -1).
    mem_size: the most samples the memory holds.
    groupby: ``None``, ``"class"``, ``"experience"`` or ``"task"``.
    selection_strategy: orders each group (default
        :class:`~clreplay.RandomExemplarsSelectionStrategy`); a public attribute,
        read at every update.
    seed: seeds the default random selection when it has no seed of its own.
    memmap_dir: a folder for memory-mapped storage (see
        :class:`~clreplay.replay.reservoir.ReservoirSamplingStoragePolicy`).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> from clreplay.benchmarks import Experience
    >>> policy = ParametricStoragePolicy({}, mem_size=10, groupby="class")
    >>> data = ClassificationDataset(torch.randn(30, 2), torch.tensor([0] * 20 + [1] * 4 + [2] * 6))
    >>> policy(SimpleNamespace(experience=Experience(data, 0, [0, 1, 2])))
    >>> {key: len(group) for key, group in policy.ext_mem.items()}
    {0: 3, 1: 3, 2: 4}
    """

    def __init__(
        self,
        ext_mem: Dict,
        mem_size: int,
        *,
        groupby: Optional[str] = None,
        selection_strategy: Optional[ClassExemplarsSelectionStrategy] = None,
        seed: int | None = None,
        memmap_dir=None,
    ) -> None:
        super().__init__(ext_mem, mem_size, seed=seed)
        self.groupby = check_choice("groupby", groupby, GROUPBY)
        if selection_strategy is None:
            selection_strategy = RandomExemplarsSelectionStrategy(seed=seed)
        self.selection_strategy = selection_strategy
        self.memmap_dir = memmap_dir
        self._origins: Dict[Hashable, Tensor] = {
            key: torch.full((len(group),), -1, dtype=torch.long) for key, group in ext_mem.items()
        }
        self._adopt()

    def _adopt(self) -> None:
        """Copy the groups ``ext_mem`` holds, in order, into the rows of a fresh slab."""
        self._slab = Slab(self.mem_size, directory=self.memmap_dir)
        self._rows: Dict[Hashable, Tensor] = {}
        total = sum(len(group) for group in self.ext_mem.values())
        if total > self.mem_size:
            raise ValueError(f"ext_mem must hold at most mem_size ({self.mem_size}) samples, got {total}")
        start = 0
        for key, group in self.ext_mem.items():
            rows = torch.arange(start, start + len(group))
            if len(group):
                self._slab.write(rows, *group.get_batch(torch.arange(len(group))))
            self._rows[key] = rows
            start += len(group)
        if self._slab.allocated:
            for key in self.ext_mem:
                self.ext_mem[key] = self._view(key)

    def _view(self, key: Hashable) -> ClassificationDataset:
        return self._slab.dataset().subset(self._rows[key].to(self._slab.device))

    # ------------------------------------------------------------------ updates
    def _split(self, data: ClassificationDataset, experience: int) -> Dict[Hashable, Tensor]:
        """Positions of ``data`` in each group, groups in ascending key order."""
        if self.groupby is None:
            return {0: torch.arange(len(data))}
        if self.groupby == "experience":
            return {experience: torch.arange(len(data))}
        labels = (data.targets if self.groupby == "class" else data.task_labels).cpu()
        return {int(k): torch.nonzero(labels == k).flatten() for k in torch.unique(labels).tolist()}

    def _order(self, strategy, new: ClassificationDataset, key: Hashable) -> Tensor:
        """The selection order over the new samples of group ``key`` followed by its stored ones."""
        stored = len(self._rows.get(key, ()))
        n = len(new) + stored
        if type(self.selection_strategy) is RandomExemplarsSelectionStrategy:
            # Random order needs only the count: skip copying the candidates together.
            candidates = range(n)
        elif stored:
            candidates = ClassificationDataset.concat([new, self.ext_mem[key]])
        else:
            candidates = new
        order = self.selection_strategy.make_sorted_indices(strategy, candidates)
        return check_sorted_indices(order, n, self.selection_strategy, complete=True)

    def __call__(self, strategy, **kwargs) -> None:
        """Store from every sample of ``strategy.experience``."""
        experience = experience_of(strategy)
        self._update(strategy, experience.dataset, experience.current_experience)

    def update_from_batch(self, strategy, x: Tensor, y: Tensor, t: Tensor) -> None:
        """Store from the samples of one mini-batch of ``strategy.experience``."""
        experience = experience_of(strategy)
        self._update(strategy, ClassificationDataset(x, y, t), experience.current_experience)

    def _update(self, strategy, data: ClassificationDataset, experience: int) -> None:
        if len(data) == 0:
            return
        new_positions = self._split(data, experience)
        orders = {key: self._order(strategy, data.subset(pos), key) for key, pos in new_positions.items()}
        keys: List[Hashable] = list(self._rows) + [k for k in new_positions if k not in self._rows]
        available = [
            len(new_positions[k]) + len(self._rows.get(k, ())) if k in orders else len(self._rows[k])
            for k in keys
        ]
        sizes = dict(zip(keys, even_sizes(available, self.mem_size)))
        # What each group keeps: stored samples keep their rows, new ones take free rows.
        kept_old: Dict[Hashable, Tensor] = {}
        kept: Dict[Hashable, Tensor] = {}
        for key in keys:
            old_rows = self._rows.get(key, torch.empty(0, dtype=torch.long))
            if key not in orders:
                kept_old[key] = old_rows[: sizes[key]]
                continue
            n_new = len(new_positions[key])
            keep = orders[key][: sizes[key]]
            kept[key] = keep
            kept_old[key] = old_rows[keep[keep >= n_new] - n_new]
        used = torch.zeros(self.mem_size, dtype=torch.bool)
        for rows in kept_old.values():
            used[rows] = True
        free = torch.nonzero(~used).flatten()
        new_rows, sources, origins = {}, [], {}
        taken = 0
        for key, keep in kept.items():
            is_new = keep < len(new_positions[key])
            count = int(is_new.sum())
            rows = torch.empty(len(keep), dtype=torch.long)
            rows[is_new] = free[taken : taken + count]
            rows[~is_new] = kept_old[key]
            taken += count
            sources.append(new_positions[key][keep[is_new]])
            new_rows[key] = rows
            old_origins = self._origins.get(key, torch.empty(0, dtype=torch.long))
            origin = torch.full((len(keep),), experience, dtype=torch.long)
            origin[~is_new] = old_origins[keep[~is_new] - len(new_positions[key])]
            origins[key] = origin
        if taken:
            self._slab.write(free[:taken], *data.get_batch(torch.cat(sources)))
        for key in keys:
            if key in new_rows:
                self._rows[key], self._origins[key] = new_rows[key], origins[key]
            else:
                self._rows[key] = kept_old[key]
                self._origins[key] = self._origins[key][: sizes[key]]
            self.ext_mem[key] = self._view(key)

    def replay_groups(self) -> Dict[int, ClassificationDataset]:
        """Stored samples grouped by experience of origin (ascending)."""
        keys = [k for k in self.ext_mem if len(self.ext_mem[k]) > 0]
        if not keys:
            return {}
        if self.groupby == "experience":
            return {k: self.ext_mem[k] for k in keys}
        return group_by_origin([self.ext_mem[k] for k in keys], [self._origins[k] for k in keys])

    # -------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        state = super().state_dict()
        self._slab.release()  # copying read the rows through the mapping, if any
        return state

    def _extra_state(self) -> dict:
        return {
            "groupby": self.groupby,
            "origins": [(key, origin) for key, origin in self._origins.items()],
            "selection_strategy": self.selection_strategy.state_dict(),
        }

    def _load_extra_state(self, state: dict) -> None:
        if state["groupby"] != self.groupby:
            raise ValueError(
                f"groupby of the saved memory ({state['groupby']!r}) differs from this "
                f"policy's groupby ({self.groupby!r})"
            )
        self._origins = dict(state["origins"])
        self.selection_strategy.load_state_dict(state["selection_strategy"])

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._adopt()
