import pytest

from clreplay.replay import balanced_sizes


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
def test_balanced_sizes(available, capacity, expected):
    assert balanced_sizes(available, capacity) == expected


def test_fixed_share_keeps_the_remainder_for_the_newest():
    assert balanced_sizes([120, 120], 15, share=6) == [6, 9]
    assert balanced_sizes([2, 120], 15, share=6) == [2, 13]
