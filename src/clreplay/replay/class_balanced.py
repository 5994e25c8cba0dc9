"""ClassBalancedStoragePolicy: the memory split equally over classes."""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional

import torch

from clreplay._validation import check_int
from clreplay.data.dataset import ClassificationDataset
from clreplay.replay.selection import (
    ClassExemplarsSelectionStrategy,
    RandomExemplarsSelectionStrategy,
    check_sorted_indices,
)
from clreplay.replay.storage import (
    StoragePolicy,
    UsesSelectionStrategy,
    experience_of,
    group_by_origin,
)


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
    seed: seeds the random hand-out of spare capacity (see :class:`StoragePolicy`).

    The memory also records each stored sample's experience of origin, so replay
    can balance mini-batches over experiences (:meth:`replay_groups`).
    """

    def __init__(
        self,
        ext_mem: Dict,
        mem_size: int,
        adaptive_size: bool = True,
        total_num_classes: int = -1,
        selection_strategy: Optional[ClassExemplarsSelectionStrategy] = None,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__(ext_mem, mem_size, seed=seed)
        if not isinstance(adaptive_size, bool):
            raise TypeError(f"adaptive_size must be a bool, got {adaptive_size!r}")
        self.adaptive_size = adaptive_size
        self.total_num_classes = check_int("total_num_classes", total_num_classes)
        if not adaptive_size and self.total_num_classes <= 0:
            raise ValueError(
                "total_num_classes must be a positive int when adaptive_size=False, "
                f"got {total_num_classes!r}"
            )
        if selection_strategy is None:
            selection_strategy = RandomExemplarsSelectionStrategy()
        self.selection_strategy = selection_strategy
        self.seen_classes: set = set(ext_mem)
        # Experience of origin of every stored sample, aligned with ext_mem[c].
        self._origins: Dict[int, torch.Tensor] = {
            c: torch.full((len(d),), -1, dtype=torch.long) for c, d in ext_mem.items()
        }

    def _div_cnt(self) -> int:
        if self.adaptive_size:
            return len(self.seen_classes)
        return max(self.total_num_classes, len(self.seen_classes))

    def __call__(self, strategy, **kwargs) -> None:
        """Re-order the classes of ``strategy.experience`` with their stored samples, then cut."""
        experience = experience_of(strategy)
        new_data: ClassificationDataset = experience.dataset
        targets = new_data.targets.cpu()
        classes: List[int] = torch.unique(targets).tolist()
        ordered = {}
        for c in classes:
            class_data = new_data.subset(torch.nonzero(targets == c).flatten().to(new_data.device))
            origins = torch.full((len(class_data),), experience.current_experience, dtype=torch.long)
            if c in self.ext_mem:
                class_data = ClassificationDataset.concat([class_data, self.ext_mem[c]])
                origins = torch.cat([origins, self._origins[c]])
            order = check_sorted_indices(
                self.selection_strategy.make_sorted_indices(strategy, class_data),
                len(class_data),
                self.selection_strategy,
            )
            # A view for now; cutoff_memory copies what is kept.
            ordered[c] = (class_data.subset(order.to(class_data.device)), origins[order])
        # The memory changes only once every class is ordered: a selection that
        # fails (e.g. on NaN features) leaves it as it was.
        self.seen_classes.update(classes)
        div_cnt = self._div_cnt()
        if div_cnt == 0:  # only empty experiences so far: nothing to store or divide
            return
        for c, (class_data, origins) in ordered.items():
            self.ext_mem[c], self._origins[c] = class_data, origins
        self.cutoff_memory(self.divide_remaining_samples(self.mem_size // div_cnt, div_cnt))

    def divide_remaining_samples(self, exp_mem_size: int, div_cnt: int) -> Dict[int, int]:
        """How many samples each class keeps (parameter names as in the spec).

        ``exp_mem_size`` is the per-class share ``mem_size // div_cnt``; each class
        gets ``min(exp_mem_size, stored)``. The rest of the capacity
        (``mem_size``; with a fixed divisor, ``exp_mem_size`` per class seen until
        all ``div_cnt`` classes are seen) is handed out one sample at a time to
        classes that have more, in rounds: each round visits those classes in a random
        order drawn from the policy's generator and gives each one sample, so classes
        with enough samples end within one sample of each other.
        """
        class_mem_size = check_int("exp_mem_size", exp_mem_size, minimum=0)
        div_cnt = check_int("div_cnt", div_cnt, minimum=1)
        keys = sorted(self.ext_mem)
        stored = {c: len(self.ext_mem[c]) for c in keys}
        cutoffs = {c: min(class_mem_size, stored[c]) for c in keys}
        capacity = self.mem_size if len(keys) >= div_cnt else class_mem_size * len(keys)
        free = capacity - sum(cutoffs.values())
        still_to_fill = [c for c in keys if stored[c] > cutoffs[c]]
        # Rounds over a fresh random order of the classes that have more: each gets
        # one sample per round, so their sizes never differ by more than one.
        while free > 0 and still_to_fill:
            for j in torch.randperm(len(still_to_fill), generator=self.generator).tolist():
                if free == 0:
                    break
                cutoffs[still_to_fill[j]] += 1
                free -= 1
            still_to_fill = [c for c in still_to_fill if stored[c] > cutoffs[c]]
        return cutoffs

    def cutoff_memory(self, cutoff_per_exp: Dict[int, int]) -> None:
        """Keep the first ``cutoff_per_exp[c]`` stored samples of each class ``c``.

        (The parameter keeps the spec's name; its keys are the memory's groups, classes here.)
        """
        if not isinstance(cutoff_per_exp, Mapping):
            raise TypeError(
                f"cutoff_per_exp must be a dict from class to size, got {type(cutoff_per_exp).__name__}"
            )
        for c, cutoff in cutoff_per_exp.items():
            if c not in self.ext_mem:
                raise ValueError(f"cutoff_per_exp must name classes in memory, got class {c!r}")
            cutoff = check_int(f"cutoff_per_exp[{c!r}]", cutoff, minimum=0)
            # head() copies a slice: every class is trimmed after every experience,
            # so its cost per class is what grows with the stream.
            self.ext_mem[c] = self.ext_mem[c].head(cutoff)
            origins = self._origins[c]
            if len(origins) > len(self.ext_mem[c]):  # a copy: a slice would keep the rest alive
                self._origins[c] = origins[: len(self.ext_mem[c])].clone()

    def replay_groups(self) -> Dict[int, ClassificationDataset]:
        """Stored samples regrouped by their experience of origin."""
        keys = [c for c in sorted(self.ext_mem) if len(self.ext_mem[c]) > 0]
        if not keys:
            return {}
        return group_by_origin([self.ext_mem[c] for c in keys], [self._origins[c] for c in keys])

    # ------------------------------------------------------------ persistence
    def _extra_state(self) -> dict:
        return {
            "seen_classes": sorted(self.seen_classes),
            "origins": [(c, o) for c, o in self._origins.items()],
            "selection_strategy": self.selection_strategy.state_dict(),
        }

    def _load_extra_state(self, state: dict) -> None:
        self.seen_classes = set(state["seen_classes"])
        self._origins = dict(state["origins"])
        self.selection_strategy.load_state_dict(state["selection_strategy"])
