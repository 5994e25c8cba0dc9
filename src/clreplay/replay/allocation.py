"""How a memory's capacity is split over its groups."""

from __future__ import annotations

from typing import List, Optional, Sequence


def balanced_sizes(available: Sequence[int], capacity: int, *, share: Optional[int] = None) -> List[int]:
    """Split ``capacity`` over groups as evenly as possible, none above what it has.

    Every group gets ``share`` (default ``capacity // len(available)``) and the
    newest group (the last) also gets what is left of ``capacity``. A group that
    has fewer samples than its quota keeps them all, and the capacity it leaves
    unused is split again, evenly with the remainder to the newest, over the
    groups that have more. The result sums to ``min(capacity, sum(available))``.

    >>> balanced_sizes([120, 120, 120], 25)
    [8, 8, 9]
    >>> balanced_sizes([25, 5], 25)
    [20, 5]
    >>> balanced_sizes([120, 120], 15, share=6)  # 27 over 4 fixed groups, 2 seen
    [6, 9]
    """
    sizes = [0] * len(available)
    open_groups = list(range(len(available)))
    while open_groups:
        k = len(open_groups)
        base = capacity // k if share is None else min(share, capacity // k)
        quota = {g: base for g in open_groups}
        quota[open_groups[-1]] = capacity - base * (k - 1)
        # Only a group with fewer samples than its quota frees capacity for the others.
        full = [g for g in open_groups if available[g] < quota[g]]
        if not full:
            for g in open_groups:
                sizes[g] = quota[g]
            break
        for g in full:
            sizes[g] = available[g]
            capacity -= available[g]
        open_groups = [g for g in open_groups if available[g] >= quota[g]]
        share = None  # freed capacity is always split evenly
    return sizes
