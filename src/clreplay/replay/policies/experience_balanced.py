"""ExperienceBalancedStoragePolicy: the memory split equally over experiences."""

from __future__ import annotations

from typing import Dict

import torch

from clreplay._validation import check_int
from clreplay.data.dataset import ClassificationDataset
from clreplay.replay.policies.allocation import split_capacity
from clreplay.replay.policies.base import StoragePolicy, check_divisor, experience_of
from clreplay.replay.storage.store import GroupPlan


class ExperienceBalancedStoragePolicy(StoragePolicy):
    """Stores a random subset of each experience, equally divided over experiences.

    Groups are keyed by experience index (``experience.current_experience``). After
    ``k`` experiences each holds ``mem_size // k`` samples, the remainder going to
    the newest group; an experience smaller than its share keeps all its samples
    and the unused capacity goes to the others, so the memory holds
    ``min(mem_size, samples seen)``. Call it after each training experience.

    Parameters
    ----------
    ext_mem: the replay memory dict to fill.
    mem_size: the most samples the memory holds.
    adaptive_size: divide ``mem_size`` over the experiences seen so far (True) or
        over a fixed ``num_experiences`` (False; capacity of experiences not yet
        seen stays free, and the divisor grows if more experiences arrive).
    num_experiences: the fixed divisor when ``adaptive_size`` is False.
    seed: seeds the random subsampling (see :class:`StoragePolicy`).
    memmap_dir: keep the memory in memory-mapped files there (see :class:`StoragePolicy`).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> from clreplay.benchmarks import Experience
    >>> policy = ExperienceBalancedStoragePolicy({}, mem_size=25)
    >>> for i in range(3):
    ...     data = ClassificationDataset(torch.randn(120, 2), torch.full((120,), i))
    ...     policy(SimpleNamespace(experience=Experience(data, i, [i])))
    >>> {key: len(group) for key, group in policy.ext_mem.items()}
    {0: 8, 1: 8, 2: 9}
    """

    name = "experience"
    summary = "ExperienceBalancedStoragePolicy: the memory split equally over experiences"

    def __init__(self, ext_mem: Dict, mem_size: int, adaptive_size: bool = True,
                 num_experiences: int = -1, *, seed: int | None = None, memmap_dir=None) -> None:
        super().__init__(ext_mem, mem_size, seed=seed, memmap_dir=memmap_dir)
        self.adaptive_size, self.num_experiences = check_divisor(
            adaptive_size, "num_experiences", num_experiences)

    def subsample_single(self, data: ClassificationDataset, new_size: int) -> ClassificationDataset:
        """A random subset of ``data`` of length ``new_size`` (``data`` itself if not larger)."""
        if not isinstance(data, ClassificationDataset):
            raise TypeError(f"data must be a ClassificationDataset, got {type(data).__name__}")
        new_size = check_int("new_size", new_size, minimum=0)
        if len(data) <= new_size:
            return data
        return data.subset(self._keep(len(data), new_size))

    def _keep(self, n: int, size: int) -> torch.Tensor:
        """Positions of a random subset of ``size`` of ``n`` samples (all, in order, if ``n <= size``)."""
        if n <= size:
            return torch.arange(n)
        return torch.randperm(n, generator=self.generator)[:size]

    def _subsample_rows(self, rows: torch.Tensor, size: int) -> GroupPlan:
        """A group of stored ``rows`` cut to a random subset of ``size`` (as it is if not larger)."""
        return GroupPlan.of_rows(rows if len(rows) <= size else rows[self._keep(len(rows), size)])

    def subsample_all_groups(self, new_size: int) -> None:
        """Shrink all groups equally (remainder to the newest) to ``new_size`` samples in total."""
        new_size = check_int("new_size", new_size, minimum=0)
        rows = self._stored_rows()
        sizes = split_capacity([len(r) for r in rows.values()], new_size)
        self._commit({key: self._subsample_rows(r, size) for (key, r), size in zip(rows.items(), sizes)})

    def _capacity(self, n_groups: int) -> tuple[int, int | None]:
        """Capacity for ``n_groups`` groups and the fixed per-group share, if any."""
        if self.adaptive_size or n_groups >= self.num_experiences:
            return self.mem_size, None
        share = self.mem_size // self.num_experiences
        return share * n_groups + self.mem_size % self.num_experiences, share

    def __call__(self, strategy, *, columns=None, **kwargs) -> None:
        """Add a random subset of ``strategy.experience`` and rebalance the groups."""
        experience = experience_of(strategy)
        key = experience.current_experience
        new_data = experience.dataset
        rows = self._stored_rows()
        # The same experience again: its stored samples, then the new ones, are one group.
        again = rows.pop(key, None)
        keys = list(rows) + [key]
        n_old = 0 if again is None else len(again)
        available = [len(r) for r in rows.values()] + [n_old + len(new_data)]
        capacity, share = self._capacity(len(keys))
        sizes = split_capacity(available, capacity, share=share)
        plans = {k: self._subsample_rows(r, size) for (k, r), size in zip(rows.items(), sizes)}
        keep = self._keep(available[-1], sizes[-1])
        if again is None:
            plans[key] = GroupPlan.of_new(torch.arange(len(new_data))[keep])
        else:  # candidates: the stored samples first, as they were concatenated before
            plans[key] = GroupPlan(torch.arange(len(new_data)), again,
                                   torch.where(keep < n_old, keep + len(new_data), keep - n_old))
        self._commit(plans, new_data, origin=key, columns=columns)

