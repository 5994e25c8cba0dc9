"""Exemplar selection strategies: in which order a group's samples are kept.

A strategy returns a priority order over a dataset; a storage policy keeps a
prefix of it, so the last indices are the first to be dropped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import List

import torch
from torch import Tensor

from clreplay._seeding import Seeded
from clreplay.components import Described
from clreplay.data.dataset import ClassificationDataset


class ClassExemplarsSelectionStrategy(Described, ABC):
    """Base class to define how to select class exemplars from a dataset.

    ``needs_model`` (see :class:`~clreplay.components.Described`) says whether the
    order depends on a model, so the command line knows without building one.
    """


    @abstractmethod
    def make_sorted_indices(self, strategy, data: ClassificationDataset) -> List[int]:
        """The indices of ``data`` in keeping order: the last ones are removed first."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class RandomExemplarsSelectionStrategy(Seeded, ClassExemplarsSelectionStrategy):
    """Select the exemplars at random: a permutation drawn from the strategy's own generator.

    >>> RandomExemplarsSelectionStrategy(seed=0).make_sorted_indices(None, range(5))
    [4, 0, 1, 3, 2]
    """

    _seed_name = "selection_strategy"
    name = "random"
    summary = "random order"

    def __init__(self, *, seed: int | None = None) -> None:
        self._init_seed(seed)

    def make_sorted_indices(self, strategy, data) -> List[int]:
        if not hasattr(data, "__len__"):
            raise TypeError(f"data must be a sized dataset, got {type(data).__name__}")
        return torch.randperm(len(data), generator=self.generator).tolist()

    def state_dict(self) -> dict:
        return self._seed_state()

    def load_state_dict(self, state: dict) -> None:
        self._load_seed_state(state)


def check_sorted_indices(order, n: int, owner, *, complete: bool = False) -> Tensor:
    """``order`` from ``owner.make_sorted_indices`` as a LongTensor of distinct positions
    in ``[0, n)`` (every one of them when ``complete``), or an error naming ``owner``."""
    try:
        idx = torch.as_tensor(list(order), dtype=torch.long)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"{type(owner).__name__}.make_sorted_indices must return a list of ints, got {order!r}"
        ) from err
    distinct = len(torch.unique(idx)) == len(idx)
    in_range = idx.numel() == 0 or (idx.min() >= 0 and idx.max() < n)
    if not (distinct and in_range and (len(idx) == n or not complete)):
        what = "each index in" if complete else "distinct indices in"
        raise ValueError(
            f"{type(owner).__name__}.make_sorted_indices must return {what} [0, {n})"
            f"{' once' if complete else ''}, got {idx.tolist()}"
        )
    return idx
