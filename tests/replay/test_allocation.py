import pytest
import torch

from clreplay.replay import split_capacity


@pytest.mark.parametrize(
    "available, capacity, expected",
    [
        ([120], 25, [25]),
        ([120, 120], 25, [12, 13]),
        ([120] * 3, 25, [8, 8, 9]),
        ([120] * 4, 25, [6, 6, 6, 7]),
        ([120] * 5, 25, [5] * 5),
        ([120] * 4, 26, [6, 6, 6, 8]),  # the whole remainder goes to the newest
        ([25, 5], 25, [20, 5]),  # unused capacity of a small group goes to the others
        ([20, 5, 120], 25, [10, 5, 10]),
        ([3, 4], 25, [3, 4]),  # less data than capacity: keep everything
        ([], 10, []),
    ],
)
def test_split_capacity(available, capacity, expected):
    assert split_capacity(available, capacity) == expected


def test_fixed_share_keeps_the_remainder_for_the_newest():
    assert split_capacity([120, 120], 15, share=6) == [6, 9]
    assert split_capacity([2, 120], 15, share=6) == [2, 13]


@pytest.mark.parametrize(
    "available, capacity, expected",
    [
        ([20] * 6, 10, [1, 1, 2, 2, 2, 2]),  # one each to the newest
        ([1, 20, 20], 10, [1, 4, 5]),
        ([2, 2, 30], 10, [2, 2, 6]),
    ],
)
def test_spread_gives_the_remainder_one_each_to_the_newest(available, capacity, expected):
    assert split_capacity(available, capacity, remainder="spread") == expected


def test_random_remainder_gives_one_each_to_random_groups_within_one_of_each_other():
    # 25 over 3 full classes and one of 2: the small one keeps 2, then 23 = 7 + 8 + 8 over the rest.
    seen = set()
    for seed in range(20):
        sizes = split_capacity([30, 2, 30, 30], 25, remainder="random", share=6,
                               generator=torch.Generator().manual_seed(seed))
        assert sizes[1] == 2 and sum(sizes) == 25 and sorted(sizes[::2] + [sizes[3]])[0] >= 7
        assert max(sizes[0], sizes[2], sizes[3]) - min(sizes[0], sizes[2], sizes[3]) <= 1
        seen.add(tuple(sizes))
    assert len(seen) == 3  # the group with the smaller share is drawn at random


def test_random_remainder_needs_a_generator():
    with pytest.raises(ValueError, match="generator must be a torch.Generator when remainder='random'"):
        split_capacity([5, 5], 3, remainder="random")


def test_unknown_remainder_is_refused():
    with pytest.raises(ValueError, match="remainder must be one of"):
        split_capacity([5, 5], 3, remainder="oldest")
