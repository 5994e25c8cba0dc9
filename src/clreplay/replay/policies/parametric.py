"""ParametricStoragePolicy: the memory split evenly over groups of a chosen kind."""

from __future__ import annotations

from typing import Dict, Hashable, Optional

import torch
from torch import Tensor

from clreplay._validation import check_choice
from clreplay.data.dataset import ClassificationDataset
from clreplay.options import Option
from clreplay.replay.policies.allocation import split_capacity
from clreplay.replay.policies.base import UsesSelectionStrategy, experience_of
from clreplay.replay.policies.streaming import StreamingStoragePolicy
from clreplay.replay.selection.base import (
    ClassExemplarsSelectionStrategy,
    RandomExemplarsSelectionStrategy,
)
from clreplay.replay.storage.store import GroupPlan

GROUPBY = (None, "class", "experience", "task")
GROUPBY_OPTION = Option("groupby", None, "groups the parametric policy splits the memory evenly over "
                        "(default: one group)", kind=str, choices=GROUPBY[1:])


class ParametricStoragePolicy(UsesSelectionStrategy, StreamingStoragePolicy):
    """Memory split evenly over groups, each group kept in the order of a selection strategy.

    ``groupby`` says what a group is: ``None`` (one group, key 0), ``"class"``
    (keyed by class label), ``"experience"`` (keyed by experience index) or
    ``"task"`` (keyed by task label). On each update the new samples are split
    into their groups; in every group that receives samples, the new samples
    followed by those already stored are put in the order given by
    ``selection_strategy.make_sorted_indices``. The capacity is then split with
    :func:`~clreplay.replay.policies.allocation.split_capacity` (``remainder="spread"``) over the groups in the order they first appeared (an even
    share each, the remainder one sample each to the newest groups, capacity a
    small group cannot use redistributed to the others), and every group keeps
    that many samples from the front of its order. Groups that receive nothing
    keep a prefix of their order, without being re-ordered.

    Groups are views of the policy's store (in RAM, or memory-mapped files in
    ``memmap_dir``). Each sample's experience of origin is recorded, so replay
    balances over experiences (:meth:`replay_groups`) whatever the grouping.

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
    memmap_dir: keep the memory in memory-mapped files there (see
        :class:`~clreplay.StoragePolicy`).

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

    name = "parametric"
    summary = "ParametricStoragePolicy: the memory split evenly over --groupby groups"
    options = (GROUPBY_OPTION,)
    uses_selection = True

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
        super().__init__(ext_mem, mem_size, seed=seed, memmap_dir=memmap_dir)
        self.groupby = check_choice("groupby", groupby, GROUPBY)
        if selection_strategy is None:
            selection_strategy = RandomExemplarsSelectionStrategy()
        self.selection_strategy = selection_strategy

    # ------------------------------------------------------------------ updates
    def _split(self, data: ClassificationDataset, experience: int) -> Dict[Hashable, Tensor]:
        """Positions of ``data`` in each group, groups in ascending key order."""
        if self.groupby is None:
            return {0: torch.arange(len(data))}
        if self.groupby == "experience":
            return {experience: torch.arange(len(data))}
        labels = (data.targets if self.groupby == "class" else data.task_labels).cpu()
        return {int(k): torch.nonzero(labels == k).flatten() for k in torch.unique(labels).tolist()}

    def _group_order(self, strategy, new: ClassificationDataset, old: Tensor) -> Tensor:
        """The selection order over a group's new samples followed by its stored ones."""
        n = len(new) + len(old)
        if type(self.selection_strategy) is RandomExemplarsSelectionStrategy:
            candidates = range(n)  # a random order needs only the count
        elif len(old):
            candidates = ClassificationDataset.concat([new, self.store.view(old)])
        else:
            candidates = new
        return self._order(strategy, candidates, n, complete=True)

    def __call__(self, strategy, *, columns=None, **kwargs) -> None:
        """Store from every sample of ``strategy.experience``."""
        experience = experience_of(strategy)
        self._update(strategy, experience.dataset, experience.current_experience, columns)

    def update_from_batch(self, strategy, x: Tensor, y: Tensor, t: Tensor, *, columns=None) -> None:
        """Store from the samples of one mini-batch of ``strategy.experience``."""
        experience = experience_of(strategy)
        self._update(strategy, ClassificationDataset(x, y, t), experience.current_experience, columns)

    def _update(self, strategy, data: ClassificationDataset, experience: int, columns=None) -> None:
        if len(data) == 0:
            return
        rows = self._stored_rows()
        plans: Dict[Hashable, GroupPlan] = {key: GroupPlan.of_rows(r) for key, r in rows.items()}
        for key, positions in self._split(data, experience).items():
            old = rows.get(key, torch.empty(0, dtype=torch.long))
            order = self._group_order(strategy, data.subset(positions), old)
            plans[key] = GroupPlan(positions, old, order)
        sizes = split_capacity([len(p) for p in plans.values()], self.mem_size, remainder="spread")
        plans = {key: plan.cut(size) for (key, plan), size in zip(plans.items(), sizes)}
        self._commit(plans, data, origin=experience, columns=columns)

    def replay_groups(self) -> Dict[int, ClassificationDataset]:
        """Stored samples grouped by experience of origin (ascending)."""
        if self.groupby == "experience":
            return {k: g for k, g in self.ext_mem.items() if len(g) > 0}
        return self._groups_by_origin()

    # -------------------------------------------------------------- persistence
    def _extra_state(self) -> dict:
        return {"groupby": self.groupby, "selection_strategy": self.selection_strategy.state_dict()}

    def _load_extra_state(self, state: dict) -> None:
        if state["groupby"] != self.groupby:
            raise ValueError(
                f"groupby of the saved memory ({state['groupby']!r}) differs from this "
                f"policy's groupby ({self.groupby!r})"
            )
        self.selection_strategy.load_state_dict(state["selection_strategy"])
