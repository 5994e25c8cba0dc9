"""What replay mixes into a mini-batch: task groups, memory-only transforms, draws."""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import torch
from torch import Tensor

from clreplay.data.dataset import ClassificationDataset

#: Memories up to this size are sampled with one permutation; larger ones by
#: drawing indices and redrawing the rare repeats (a permutation would cost O(n)).
_PERMUTE_UP_TO = 4096


def group_by_task(groups: Sequence[ClassificationDataset]) -> Dict[int, ClassificationDataset]:
    """The samples of ``groups`` regrouped by task label (ascending), in their order within.

    >>> a = ClassificationDataset(torch.zeros(3, 1), torch.tensor([0, 1, 2]), torch.tensor([1, 0, 1]))
    >>> {t: g.targets.tolist() for t, g in group_by_task([a]).items()}
    {0: [1], 1: [0, 2]}
    """
    groups = [g for g in groups if len(g) > 0]
    if not groups:
        return {}
    everything = ClassificationDataset.concat(groups)
    tasks = everything.task_labels.cpu()
    return {
        int(t): everything.subset(torch.nonzero(tasks == t).flatten().to(everything.device))
        for t in torch.unique(tasks).tolist()
    }


def check_memory_transform(value) -> Optional[Callable[[Tensor], Tensor]]:
    if value is not None and not callable(value):
        raise TypeError(f"memory_transform must be callable or None, got {type(value).__name__}")
    return value


def apply_memory_transform(transform: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``transform(x)`` for the stacked memory part ``x`` of a batch, checked to stay a batch."""
    out = transform(x)
    if not isinstance(out, Tensor):
        raise TypeError(f"memory_transform must return a Tensor, got {type(out).__name__}")
    if out.shape[0] != x.shape[0]:
        raise ValueError(
            f"memory_transform must keep one row per sample ({x.shape[0]}), got shape {tuple(out.shape)}"
        )
    return out


def sample_without_replacement(n: int, k: int, generator: torch.Generator) -> Tensor:
    """``min(k, n)`` distinct positions in ``[0, n)``, uniformly at random, in random order.

    >>> g = torch.Generator().manual_seed(0)
    >>> sorted(sample_without_replacement(5, 9, g).tolist())
    [0, 1, 2, 3, 4]
    >>> len(set(sample_without_replacement(10**6, 50, g).tolist()))
    50
    """
    if k >= n or n <= _PERMUTE_UP_TO:
        return torch.randperm(n, generator=generator)[:k]
    drawn = torch.randint(n, (k,), generator=generator)
    values = drawn.tolist()
    if len(set(values)) == k:
        return drawn
    seen, out = set(), []
    for v in values:  # a repeat is redrawn until new: uniform over the unseen positions
        while v in seen:
            v = int(torch.randint(n, (1,), generator=generator))
        seen.add(v)
        out.append(v)
    return torch.tensor(out)
