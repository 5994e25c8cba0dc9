"""How a memory's capacity is split over its groups."""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence


def _water_fill(available: Sequence[int], capacity: int, quotas: Callable[[List[int], int, bool], Dict[int, int]]) -> List[int]:
    """Give each open group its quota; a group with fewer samples keeps them all and
    the capacity it leaves is split again (``quotas(groups, capacity, first_round)``)
    over the groups that have more."""
    sizes = [0] * len(available)
    open_groups = list(range(len(available)))
    first_round = True
    while open_groups:
        quota = quotas(open_groups, capacity, first_round)
        # Only a group with fewer samples than its quota frees capacity for the others.
        small = [g for g in open_groups if available[g] < quota[g]]
        if not small:
            for g in open_groups:
                sizes[g] = quota[g]
            break
        for g in small:
            sizes[g] = available[g]
            capacity -= available[g]
        open_groups = [g for g in open_groups if available[g] >= quota[g]]
        first_round = False
    return sizes


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

    def quotas(groups: List[int], cap: int, first_round: bool) -> Dict[int, int]:
        k = len(groups)
        # A fixed share holds only in the first round: freed capacity is split evenly.
        base = cap // k if share is None or not first_round else min(share, cap // k)
        quota = {g: base for g in groups}
        quota[groups[-1]] = cap - base * (k - 1)
        return quota

    return _water_fill(available, capacity, quotas)


def even_sizes(available: Sequence[int], capacity: int) -> List[int]:
    """Like :func:`balanced_sizes`, but the remainder is spread one sample each over
    the newest groups, so groups with enough samples differ by at most one.

    >>> even_sizes([20, 20, 20, 20, 20, 20], 10)
    [1, 1, 2, 2, 2, 2]
    >>> even_sizes([1, 20, 20], 10)
    [1, 4, 5]
    """

    def quotas(groups: List[int], cap: int, first_round: bool) -> Dict[int, int]:
        base, extra = divmod(cap, len(groups))
        first_extra = len(groups) - extra
        return {g: base + (i >= first_extra) for i, g in enumerate(groups)}

    return _water_fill(available, capacity, quotas)
