import pytest
import torch
from conftest import by_hand, samples_of

from clreplay import (
    ClassBalancedStoragePolicy,
    ClassExemplarsSelectionStrategy,
    RandomExemplarsSelectionStrategy,
)
from clreplay.data import ClassificationDataset


class ById(ClassExemplarsSelectionStrategy):
    """Fixed order: ascending sample id (the first feature), or descending."""

    def __init__(self, descending=False):
        self.descending = descending

    def make_sorted_indices(self, strategy, data):
        ids = data.storage[data.indices, 0]
        return torch.sort(ids, descending=self.descending, stable=True).indices.tolist()


def samples(pairs):
    """A dataset from (id, label) pairs."""
    ids = torch.tensor([float(i) for i, _ in pairs])
    return ClassificationDataset(ids.unsqueeze(1), torch.tensor([c for _, c in pairs]))


def memory_ids(policy):
    return {c: samples_of(policy.ext_mem[c])[:, 0].long().tolist() for c in sorted(policy.ext_mem)}


def test_selection_order_and_cutoff_over_a_sequence():
    policy = ClassBalancedStoragePolicy({}, 6, selection_strategy=ById(descending=True))
    # experience 0: class 0 (ids 0-3), class 1 (ids 4-6); 3 per class
    policy(by_hand(samples([(0, 0), (1, 0), (2, 0), (3, 0), (4, 1), (5, 1), (6, 1)]), 0))
    assert memory_ids(policy) == {0: [3, 2, 1], 1: [6, 5, 4]}
    # experience 1: class 2 (ids 10-14); 2 per class, old classes shrink to their prefix
    policy(by_hand(samples([(i, 2) for i in range(10, 15)]), 1))
    assert memory_ids(policy) == {0: [3, 2], 1: [6, 5], 2: [14, 13]}
    # experience 2: class 0 comes back (ids 20, 21) and class 3 (id 30): mem 6 over 4 classes
    # = 1 each + 2 spare handed out at random to classes that have more
    policy(by_hand(samples([(20, 0), (21, 0), (30, 3)]), 2))
    ids = memory_ids(policy)
    assert sum(len(v) for v in ids.values()) == 6
    assert ids[3] == [30]
    # the recurring class is re-ordered together with what was stored: new ids come first
    assert ids[0] == [21, 20, 3, 2][: len(ids[0])]
    assert ids[1] == [6, 5][: len(ids[1])] and ids[2] == [14, 13][: len(ids[2])]
    assert all(1 <= len(v) <= 2 for v in ids.values())


def test_recurring_class_mixes_stored_and_new_by_the_order():
    policy = ClassBalancedStoragePolicy({}, 4, selection_strategy=ById())
    policy(by_hand(samples([(5, 0), (6, 0), (7, 0), (8, 1), (9, 1)]), 0))
    assert memory_ids(policy) == {0: [5, 6], 1: [8, 9]}
    policy(by_hand(samples([(1, 0), (7, 2), (3, 3)]), 1))
    # 4 classes, 1 each; class 0's best is the new sample with id 1
    assert memory_ids(policy) == {0: [1], 1: [8], 2: [7], 3: [3]}


def test_spare_capacity_goes_to_the_classes_that_have_more():
    policy = ClassBalancedStoragePolicy({}, 10, selection_strategy=ById())
    policy(by_hand(samples([(i, 0) for i in range(8)] + [(8, 1), (9, 1)]), 0))
    assert {c: len(v) for c, v in memory_ids(policy).items()} == {0: 8, 1: 2}


def test_divide_remaining_samples_bounds_and_determinism():
    def cutoffs(seed):
        policy = ClassBalancedStoragePolicy({}, 20, seed=seed, selection_strategy=ById())
        data = samples([(i, i % 3) for i in range(60)])
        policy.ext_mem.update({c: data.subset(torch.nonzero(data.targets == c).flatten()) for c in range(3)})
        return policy.divide_remaining_samples(5, 3)

    a = cutoffs(0)
    assert sorted(a.values()) == [6, 7, 7]  # 5 each, then 5 spare in rounds of one per class
    assert a == cutoffs(0)
    assert any(cutoffs(s) != a for s in range(1, 6))


def test_cutoff_memory_keeps_prefixes():
    policy = ClassBalancedStoragePolicy({}, 10, selection_strategy=ById())
    policy(by_hand(samples([(i, 0) for i in range(5)] + [(10 + i, 1) for i in range(5)]), 0))
    policy.cutoff_memory({0: 2, 1: 0})
    assert memory_ids(policy) == {0: [0, 1], 1: []}


def test_fixed_total_num_classes_reserves_unseen_capacity():
    policy = ClassBalancedStoragePolicy({}, 10, adaptive_size=False, total_num_classes=5, selection_strategy=ById())
    policy(by_hand(samples([(i, 0) for i in range(8)] + [(8, 1), (9, 1)]), 0))
    assert {c: len(v) for c, v in policy.ext_mem.items()} == {0: 2, 1: 2}


def test_selection_strategy_can_be_swapped_between_experiences():
    policy = ClassBalancedStoragePolicy({}, 2, selection_strategy=ById())
    policy(by_hand(samples([(1, 0), (2, 0), (3, 0)]), 0))
    assert memory_ids(policy) == {0: [1, 2]}
    policy.selection_strategy = ById(descending=True)
    policy(by_hand(samples([(9, 1), (8, 1)]), 1))
    assert memory_ids(policy) == {0: [1], 1: [9]}
    with pytest.raises(TypeError, match="selection_strategy must be a ClassExemplarsSelectionStrategy, got str"):
        policy.selection_strategy = "herding"


def test_default_selection_is_random_and_seeded():
    def memory(seed):
        policy = ClassBalancedStoragePolicy({}, 6, seed=seed, selection_strategy=RandomExemplarsSelectionStrategy(seed=seed))
        policy(by_hand(samples([(i, i % 2) for i in range(40)]), 0))
        return memory_ids(policy)

    assert isinstance(ClassBalancedStoragePolicy({}, 5).selection_strategy, RandomExemplarsSelectionStrategy)
    assert memory(1) == memory(1) and memory(1) != memory(2)


def test_replay_groups_by_experience_of_origin():
    policy = ClassBalancedStoragePolicy({}, 8, selection_strategy=ById())
    policy(by_hand(samples([(0, 0), (1, 0), (2, 1), (3, 1)]), 0))
    policy(by_hand(samples([(4, 0), (5, 2), (6, 2)]), 1))
    groups = policy.replay_groups()
    assert sorted(groups) == [0, 1]
    assert sorted(groups[0].storage[groups[0].indices, 0].long().tolist()) == [0, 1, 2, 3]
    assert sorted(groups[1].storage[groups[1].indices, 0].long().tolist()) == [4, 5, 6]


def test_bad_selection_order_is_refused():
    class Dup(ClassExemplarsSelectionStrategy):
        def make_sorted_indices(self, strategy, data):
            return [0, 0]

    policy = ClassBalancedStoragePolicy({}, 4, selection_strategy=Dup())
    with pytest.raises(ValueError, match=r"Dup.make_sorted_indices must return distinct indices in \[0, 2\), got \[0, 0\]"):
        policy(by_hand(samples([(1, 0), (2, 0)]), 0))


def test_bad_arguments():
    with pytest.raises(ValueError, match="total_num_classes must be a positive int when adaptive_size=False, got -1"):
        ClassBalancedStoragePolicy({}, 10, adaptive_size=False)
    with pytest.raises(TypeError, match="mem_size must be a positive int, got 2.0"):
        ClassBalancedStoragePolicy({}, 2.0)


def test_state_dict_round_trip():
    policy = ClassBalancedStoragePolicy({}, 6, seed=2, selection_strategy=RandomExemplarsSelectionStrategy(seed=2))
    policy(by_hand(samples([(i, i % 3) for i in range(30)]), 0))
    other = ClassBalancedStoragePolicy({}, 6, selection_strategy=RandomExemplarsSelectionStrategy(seed=5))
    other.load_state_dict(policy.state_dict())
    assert memory_ids(other) == memory_ids(policy)
    nxt = samples([(100 + i, 3 + i % 2) for i in range(10)])
    policy(by_hand(nxt, 1))
    other(by_hand(nxt, 1))
    assert memory_ids(other) == memory_ids(policy)
    assert sorted(other.replay_groups()) == [0, 1]
