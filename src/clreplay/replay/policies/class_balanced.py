"""ClassBalancedStoragePolicy: the memory split equally over classes."""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional

import torch

from clreplay._validation import check_int
from clreplay.data.dataset import ClassificationDataset
from clreplay.replay.policies.allocation import split_capacity
from clreplay.replay.policies.base import (
    StoragePolicy,
    UsesSelectionStrategy,
    check_divisor,
    experience_of,
)
from clreplay.replay.selection.base import (
    ClassExemplarsSelectionStrategy,
    RandomExemplarsSelectionStrategy,
)
from clreplay.replay.storage.store import GroupPlan


class ClassBalancedStoragePolicy(UsesSelectionStrategy, StoragePolicy):
    """Stores samples for replay, equally divided over classes.

    Groups are keyed by class label. After each experience, for every class in
    it, the new samples of that class followed by those already stored for it are
    put in the order given by ``selection_strategy.make_sorted_indices`` and
    stored so. Then :meth:`divide_remaining_samples` sets each class's size and
    :meth:`cutoff_memory` keeps that many samples from the front of each class,
    so classes that do not come back shrink to a prefix of their order.

    Parameters
    ----------
    ext_mem: the replay memory dict to fill.
    mem_size: the most samples the memory holds.
    adaptive_size: divide ``mem_size`` over the classes seen so far (True) or over
        a fixed ``total_num_classes`` (False: the share of classes not yet seen
        stays free; the divisor grows if more classes arrive).
    total_num_classes: the fixed divisor when ``adaptive_size`` is False.
    selection_strategy: orders each class's samples
        (default :class:`RandomExemplarsSelectionStrategy`); a public attribute read
        at every call, so it can be swapped between experiences.
    seed: seeds the random hand-out of spare capacity and, unless it has a seed of
        its own, the selection strategy (see :class:`StoragePolicy`).
    memmap_dir: keep the memory in memory-mapped files there (see :class:`StoragePolicy`).

    The memory also records each stored sample's experience of origin, so replay
    can balance mini-batches over experiences (:meth:`replay_groups`).
    """

    name = "class"
    summary = "ClassBalancedStoragePolicy: the memory split equally over classes"
    uses_selection = True

    def __init__(
        self,
        ext_mem: Dict,
        mem_size: int,
        adaptive_size: bool = True,
        total_num_classes: int = -1,
        selection_strategy: Optional[ClassExemplarsSelectionStrategy] = None,
        *,
        seed: int | None = None,
        memmap_dir=None,
    ) -> None:
        super().__init__(ext_mem, mem_size, seed=seed, memmap_dir=memmap_dir)
        self.adaptive_size, self.total_num_classes = check_divisor(
            adaptive_size, "total_num_classes", total_num_classes)
        if selection_strategy is None:
            selection_strategy = RandomExemplarsSelectionStrategy()
        self.selection_strategy = selection_strategy
        self.seen_classes: set = set(ext_mem)

    def _div_cnt(self) -> int:
        if self.adaptive_size:
            return len(self.seen_classes)
        return max(self.total_num_classes, len(self.seen_classes))

    def __call__(self, strategy, *, columns=None, **kwargs) -> None:
        """Re-order the classes of ``strategy.experience`` with their stored samples, then cut."""
        experience = experience_of(strategy)
        new_data: ClassificationDataset = experience.dataset
        targets = new_data.targets.cpu()
        classes: List[int] = torch.unique(targets).tolist()
        rows = self._stored_rows()
        candidates: Dict[int, GroupPlan] = {}
        for c in classes:
            positions = torch.nonzero(targets == c).flatten()
            old = rows.get(c, torch.empty(0, dtype=torch.long))
            n = len(positions) + len(old)
            if type(self.selection_strategy) is RandomExemplarsSelectionStrategy:
                data = range(n)  # a random order needs only the count
            else:
                data = new_data.subset(positions.to(new_data.device))
                if len(old):
                    data = ClassificationDataset.concat([data, self.store.view(old)])
            candidates[c] = GroupPlan(positions, old, self._order(strategy, data, n))
        # The memory changes only once every class is ordered: a selection that
        # fails (e.g. on NaN features) leaves it as it was.
        self.seen_classes.update(classes)
        div_cnt = self._div_cnt()
        if div_cnt == 0:  # only empty experiences so far: nothing to store or divide
            return
        plans = {c: candidates.get(c, GroupPlan.of_rows(r)) for c, r in rows.items()}
        plans.update({c: plan for c, plan in candidates.items() if c not in rows})
        sizes = self._divide({c: len(p) for c, p in plans.items()}, self.mem_size // div_cnt, div_cnt)
        plans = {c: plan.cut(sizes[c]) for c, plan in plans.items()}
        self._commit(plans, new_data, origin=experience.current_experience, columns=columns)

    def divide_remaining_samples(self, exp_mem_size: int, div_cnt: int) -> Dict[int, int]:
        """How many samples each class keeps (parameter names as in the spec).

        ``exp_mem_size`` is the per-class share ``mem_size // div_cnt``; each class
        gets ``min(exp_mem_size, stored)``. The rest of the capacity
        (``mem_size``; with a fixed divisor, ``exp_mem_size`` per class seen until
        all ``div_cnt`` classes are seen) goes evenly to the classes that have more,
        and what does not divide evenly one sample each to classes drawn at random
        with the policy's generator (:func:`split_capacity`, ``remainder="random"``),
        so classes with enough samples end within one sample of each other.
        """
        class_mem_size = check_int("exp_mem_size", exp_mem_size, minimum=0)
        div_cnt = check_int("div_cnt", div_cnt, minimum=1)
        return self._divide({c: len(g) for c, g in self.ext_mem.items()}, class_mem_size, div_cnt)

    def _divide(self, stored: Dict[int, int], class_mem_size: int, div_cnt: int) -> Dict[int, int]:
        keys = sorted(stored)
        capacity = self.mem_size if len(keys) >= div_cnt else class_mem_size * len(keys)
        sizes = split_capacity([stored[c] for c in keys], capacity, share=class_mem_size,
                               remainder="random", generator=self.generator)
        return dict(zip(keys, sizes))

    def cutoff_memory(self, cutoff_per_exp: Dict[int, int]) -> None:
        """Keep the first ``cutoff_per_exp[c]`` stored samples of each class ``c``.

        (The parameter keeps the spec's name; its keys are the memory's groups, classes here.)
        """
        if not isinstance(cutoff_per_exp, Mapping):
            raise TypeError(
                f"cutoff_per_exp must be a dict from class to size, got {type(cutoff_per_exp).__name__}"
            )
        plans = self._stored_plans()
        for c, cutoff in cutoff_per_exp.items():
            if c not in plans:
                raise ValueError(f"cutoff_per_exp must name classes in memory, got class {c!r}")
            plans[c] = plans[c].cut(check_int(f"cutoff_per_exp[{c!r}]", cutoff, minimum=0))
        self._commit(plans)

    def replay_groups(self) -> Dict[int, ClassificationDataset]:
        """Stored samples regrouped by their experience of origin."""
        return self._groups_by_origin()

    # ------------------------------------------------------------ persistence
    def _extra_state(self) -> dict:
        return {
            "seen_classes": sorted(self.seen_classes),
            "selection_strategy": self.selection_strategy.state_dict(),
        }

    def _load_extra_state(self, state: dict) -> None:
        self.seen_classes = set(state["seen_classes"])
        self.selection_strategy.load_state_dict(state["selection_strategy"])
