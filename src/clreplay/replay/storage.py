"""StoragePolicy: what a replay memory keeps (the base of every storage policy)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Dict, Hashable, Sequence

import torch

from clreplay._seeding import Seeded
from clreplay._validation import check_positive_int
from clreplay.benchmarks.experience import Experience
from clreplay.data.dataset import ClassificationDataset
from clreplay.replay.selection import ClassExemplarsSelectionStrategy


class StoragePolicy(Seeded, ABC):
    """A policy to store exemplars in a replay memory.

    Parameters
    ----------
    ext_mem: the replay memory, a dict from group key to a
        :class:`~clreplay.data.ClassificationDataset` of stored samples; the policy
        updates it in place.
    mem_size: the most samples the memory holds in total.
    seed: seeds the policy's own generator; None lets a
        :class:`~clreplay.ReplayPlugin` derive it from the strategy's seed (0 when
        the policy is driven by hand).

    A policy is called as ``policy(strategy)`` after each training experience and
    reads only ``strategy.experience`` (plus ``strategy.device`` and
    ``strategy.eval_mb_size`` for feature-based selection), so it can be driven by
    hand with any object that has those attributes.
    """

    _seed_name = "storage_policy"

    def __init__(self, ext_mem: Dict, mem_size: int, *, seed: int | None = None) -> None:
        if not isinstance(ext_mem, dict):
            raise TypeError(f"ext_mem must be a dict, got {type(ext_mem).__name__}")
        for key, value in ext_mem.items():
            if not isinstance(value, ClassificationDataset):
                raise TypeError(
                    f"ext_mem[{key!r}] must be a ClassificationDataset, got {type(value).__name__}"
                )
        self.ext_mem: Dict[Hashable, ClassificationDataset] = ext_mem
        self.mem_size = check_positive_int("mem_size", mem_size)
        self._init_seed(seed)

    @abstractmethod
    def __call__(self, strategy, **kwargs) -> None:
        """Store exemplars of ``strategy.experience`` in the replay memory."""

    def __len__(self) -> int:
        """The number of samples stored, over all groups."""
        return sum(len(group) for group in self.ext_mem.values())

    def replay_groups(self) -> Dict[Hashable, ClassificationDataset]:
        """The groups a replay mini-batch balances, keyed by experience.

        By default the memory's own non-empty groups; a policy whose groups are not
        experiences (e.g. classes) regroups its samples by experience of origin.
        """
        return {key: group for key, group in self.ext_mem.items() if len(group) > 0}

    # ------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        """The memory's samples, group keys and order, and the generator's state."""
        return {
            "mem_size": self.mem_size,
            "groups": [(key, group.state_dict()) for key, group in self.ext_mem.items()],
            "rng": self._seed_state(),
            "extra": self._extra_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a memory saved by :meth:`state_dict`, in place in ``ext_mem``."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        expected = {"mem_size", "groups", "rng", "extra"}
        if set(state) != expected:
            raise KeyError(
                f"storage policy state must have keys {sorted(expected)}, got {sorted(state)}"
            )
        if state["mem_size"] != self.mem_size:
            raise ValueError(
                f"mem_size of the saved memory ({state['mem_size']}) differs from this "
                f"policy's mem_size ({self.mem_size})"
            )
        groups = {key: ClassificationDataset.from_state_dict(g) for key, g in state["groups"]}
        self.ext_mem.clear()
        self.ext_mem.update(groups)
        self._load_seed_state(state["rng"])
        self._load_extra_state(state["extra"])

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass


def experience_of(strategy) -> Experience:
    """``strategy.experience``, checked: what a policy stores from."""
    experience = getattr(strategy, "experience", None)
    if not isinstance(experience, Experience):
        raise TypeError(
            "strategy must have an 'experience' attribute holding an Experience, got "
            f"{type(strategy).__name__} with experience={experience!r}"
        )
    return experience


def compact(dataset: ClassificationDataset, size: int) -> ClassificationDataset:
    """The first ``size`` samples of ``dataset`` as a dataset that owns them."""
    if size == len(dataset) and dataset.is_compact:
        return dataset
    return dataset.subset(torch.arange(size, device=dataset.device)).copy()


class UsesSelectionStrategy:
    """Mixin for policies that order samples with a ``selection_strategy``.

    The strategy is a public attribute, checked when set and read at every call,
    so it can be swapped between experiences; its seed, if unset, is derived with
    the policy's.
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

    def resolve_seed(self, parent_seed: int | None) -> None:
        super().resolve_seed(parent_seed)
        resolve = getattr(self.selection_strategy, "resolve_seed", None)
        if resolve is not None:
            resolve(parent_seed)


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


def group_by_origin(
    groups: Sequence[ClassificationDataset], origins: Sequence[torch.Tensor]
) -> Dict[int, ClassificationDataset]:
    """The samples of ``groups`` regrouped by experience of origin (``origins[i]`` gives
    one experience index per sample of ``groups[i]``), keyed in ascending order."""
    everything = ClassificationDataset.concat(list(groups))
    origin = torch.cat(list(origins))
    return {
        int(e): everything.subset(torch.nonzero(origin == e).flatten().to(everything.device))
        for e in torch.unique(origin).tolist()
    }
