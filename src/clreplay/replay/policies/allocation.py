"""How a memory's capacity is split over its groups: one rule for every policy."""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch

from clreplay._validation import check_choice

REMAINDERS = ("newest", "spread", "random")


def split_capacity(
    available: Sequence[int],
    capacity: int,
    *,
    remainder: str = "newest",
    share: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
) -> List[int]:
    """Split ``capacity`` over groups (oldest first) as evenly as possible, none above what it has.

    Each group gets an even share of the capacity (``share`` in the first round
    when given, e.g. ``mem_size // num_experiences`` for a fixed divisor). A group
    with fewer samples than its share keeps them all, and the capacity it leaves is
    split again over the groups that have more, until every open group can fill its
    share ("water-filling"). What does not divide evenly, the remainder, goes:

    * ``"newest"``: all of it to the newest open group (experience-balanced memory);
    * ``"spread"``: one sample each to the newest open groups (parametric memory);
    * ``"random"``: one sample each to open groups drawn at random with ``generator``
      (class-balanced memory).

    So groups with enough samples end within one sample of each other (``"newest"``:
    all but the newest equal), and the sizes sum to ``min(capacity, sum(available))``.

    >>> split_capacity([120, 120, 120], 25)
    [8, 8, 9]
    >>> split_capacity([25, 5], 25)
    [20, 5]
    >>> split_capacity([120, 120], 15, share=6)  # 27 over 4 fixed groups, 2 seen
    [6, 9]
    >>> split_capacity([20] * 6, 10, remainder="spread")
    [1, 1, 2, 2, 2, 2]
    >>> split_capacity([1, 20, 20], 10, remainder="spread")
    [1, 4, 5]
    >>> sorted(split_capacity([9, 9, 9], 8, remainder="random", generator=torch.Generator()))
    [2, 3, 3]
    """
    check_choice("remainder", remainder, REMAINDERS)
    if remainder == "random" and generator is None:
        raise ValueError("generator must be a torch.Generator when remainder='random', got None")
    sizes = [0] * len(available)
    open_groups = list(range(len(available)))
    first_round = True
    while open_groups:
        k = len(open_groups)
        base = capacity // k
        fixed = share is not None and first_round
        if fixed:
            base = min(share, base)
        quota = {g: base for g in open_groups}
        leftover = capacity - base * k
        if not fixed:
            _hand_out(quota, open_groups, leftover, remainder, generator)
        elif remainder == "newest":  # a fixed share: what it leaves goes to the newest
            quota[open_groups[-1]] += leftover
            leftover = 0
        small = [g for g in open_groups if available[g] < quota[g]]
        if not small:
            if fixed and leftover:  # every group filled its share: spread what is left
                first_round = False
                continue
            for g in open_groups:
                sizes[g] = quota[g]
            break
        # Only a group with fewer samples than its quota frees capacity for the others.
        for g in small:
            sizes[g] = available[g]
            capacity -= available[g]
        open_groups = [g for g in open_groups if available[g] >= quota[g]]
        first_round = False
    return sizes


def _hand_out(quota, groups: List[int], extra: int, remainder: str, generator) -> None:
    if extra == 0:
        return
    if remainder == "newest":
        quota[groups[-1]] += extra
    elif remainder == "spread":
        for g in groups[len(groups) - extra :]:
            quota[g] += 1
    else:
        for j in torch.randperm(len(groups), generator=generator)[:extra].tolist():
            quota[groups[j]] += 1
