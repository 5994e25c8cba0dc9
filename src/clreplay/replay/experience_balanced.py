"""ExperienceBalancedStoragePolicy: the memory split equally over experiences."""

from __future__ import annotations

from typing import Dict

import torch

from clreplay._validation import check_int
from clreplay.data.dataset import ClassificationDataset
from clreplay.replay.allocation import balanced_sizes
from clreplay.replay.storage import StoragePolicy, experience_of


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

    def __init__(
        self,
        ext_mem: Dict,
        mem_size: int,
        adaptive_size: bool = True,
        num_experiences: int = -1,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__(ext_mem, mem_size, seed=seed)
        if not isinstance(adaptive_size, bool):
            raise TypeError(f"adaptive_size must be a bool, got {adaptive_size!r}")
        self.adaptive_size = adaptive_size
        self.num_experiences = check_int("num_experiences", num_experiences)
        if not adaptive_size and self.num_experiences <= 0:
            raise ValueError(
                "num_experiences must be a positive int when adaptive_size=False, "
                f"got {num_experiences!r}"
            )

    def subsample_single(self, data: ClassificationDataset, new_size: int) -> ClassificationDataset:
        """A random subset of ``data`` of length ``new_size`` (``data`` itself if not larger)."""
        if not isinstance(data, ClassificationDataset):
            raise TypeError(f"data must be a ClassificationDataset, got {type(data).__name__}")
        new_size = check_int("new_size", new_size, minimum=0)
        if len(data) <= new_size:
            return data
        keep = torch.randperm(len(data), generator=self.generator)[:new_size]
        return data.subset(keep).copy()

    def subsample_all_groups(self, new_size: int) -> None:
        """Shrink all groups equally (remainder to the newest) to ``new_size`` samples in total."""
        new_size = check_int("new_size", new_size, minimum=0)
        keys = list(self.ext_mem)
        sizes = balanced_sizes([len(self.ext_mem[k]) for k in keys], new_size)
        for key, size in zip(keys, sizes):
            self.ext_mem[key] = self.subsample_single(self.ext_mem[key], size)

    def _capacity(self, n_groups: int) -> tuple[int, int | None]:
        """Capacity for ``n_groups`` groups and the fixed per-group share, if any."""
        if self.adaptive_size or n_groups >= self.num_experiences:
            return self.mem_size, None
        share = self.mem_size // self.num_experiences
        return share * n_groups + self.mem_size % self.num_experiences, share

    def __call__(self, strategy, **kwargs) -> None:
        """Add a random subset of ``strategy.experience`` and rebalance the groups."""
        experience = experience_of(strategy)
        key = experience.current_experience
        new_data = experience.dataset
        if key in self.ext_mem:  # the same experience again: pool old and new samples
            new_data = ClassificationDataset.concat([self.ext_mem.pop(key), new_data])
        keys = list(self.ext_mem) + [key]
        available = [len(self.ext_mem[k]) for k in keys[:-1]] + [len(new_data)]
        capacity, share = self._capacity(len(keys))
        sizes = balanced_sizes(available, capacity, share=share)
        for old_key, size in zip(keys[:-1], sizes[:-1]):
            self.ext_mem[old_key] = self.subsample_single(self.ext_mem[old_key], size)
        stored = self.subsample_single(new_data, sizes[-1])
        # The memory owns copies: it must not keep the whole experience alive.
        self.ext_mem[key] = stored.copy() if stored is new_data else stored
