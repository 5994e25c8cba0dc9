import pytest
import torch
from conftest import by_hand

from clreplay import (
    ClassExemplarsSelectionStrategy,
    ParametricStoragePolicy,
    RandomExemplarsSelectionStrategy,
    ReplayPlugin,
)
from clreplay.data import ClassificationDataset
from clreplay.replay import split_capacity


def samples(ids, labels, tasks=0):
    """Samples whose only feature is a unique id."""
    x = torch.as_tensor(ids, dtype=torch.float32).unsqueeze(1)
    return ClassificationDataset(x, torch.as_tensor(labels), tasks)


def ids(group):
    return group.get_batch(torch.arange(len(group)))[0][:, 0].long().tolist()


def sizes(policy):
    return {key: len(group) for key, group in policy.ext_mem.items()}


class ById(ClassExemplarsSelectionStrategy):
    """Keep the largest ids first: the stored order is known exactly."""

    def __init__(self):
        self.calls = []

    def make_sorted_indices(self, strategy, data):
        values = data.get_batch(torch.arange(len(data)))[0][:, 0]
        self.calls.append(values.long().tolist())
        return torch.sort(-values, stable=True).indices.tolist()


@pytest.mark.parametrize("available, capacity, expected", [
    ([20, 20, 20, 20, 20, 20], 10, [1, 1, 2, 2, 2, 2]),
    ([1, 20, 20], 10, [1, 4, 5]),
    ([100, 100, 100], 25, [8, 8, 9]),
    ([2, 2, 50], 25, [2, 2, 21]),
    ([3, 4], 25, [3, 4]),
    ([5, 0, 5], 4, [2, 0, 2]),
    ([], 10, []),
])
def test_even_sizes(available, capacity, expected):
    assert split_capacity(available, capacity, remainder="spread") == expected


def exp0():  # classes 0 (ids 0-9), 1 (ids 10-13), task labels 0 then 1
    return samples(range(14), [0] * 10 + [1] * 4, [0] * 7 + [1] * 7)


def exp1():  # class 2 (ids 20-29), task label 1
    return samples(range(20, 30), [2] * 10, 1)


@pytest.mark.parametrize("groupby, after0, after1", [
    (None, {0: 9}, {0: 9}),
    ("experience", {0: 9}, {0: 4, 1: 5}),
    ("class", {0: 5, 1: 4}, {0: 3, 1: 3, 2: 3}),
    ("task", {0: 4, 1: 5}, {0: 4, 1: 5}),
])
def test_group_sizes_for_each_groupby(groupby, after0, after1):
    policy = ParametricStoragePolicy({}, 9, groupby=groupby, selection_strategy=ById())
    policy(by_hand(exp0(), 0))
    assert sizes(policy) == after0
    policy(by_hand(exp1(), 1))
    assert sizes(policy) == after1
    assert len(policy) == 9


def test_groups_keep_their_selection_order_and_untouched_groups_a_prefix():
    selection = ById()
    policy = ParametricStoragePolicy({}, 9, groupby="class", selection_strategy=selection)
    policy(by_hand(exp0(), 0))
    assert ids(policy.ext_mem[0]) == [9, 8, 7, 6, 5] and ids(policy.ext_mem[1]) == [13, 12, 11, 10]
    policy(by_hand(exp1(), 1))
    # Classes 0 and 1 got no new samples: cut to a prefix without being re-ordered.
    assert selection.calls[-1] == list(range(20, 30))
    assert ids(policy.ext_mem[0]) == [9, 8, 7] and ids(policy.ext_mem[1]) == [13, 12, 11]
    assert ids(policy.ext_mem[2]) == [29, 28, 27]
    # Class 0 again: its new samples first, then the stored ones, ordered together.
    policy(by_hand(samples([50, 1], [0, 0]), 2))
    assert selection.calls[-1] == [50, 1, 9, 8, 7]
    assert ids(policy.ext_mem[0]) == [50, 9, 8]


def test_task_groups_and_replay_groups_by_origin():
    policy = ParametricStoragePolicy({}, 9, groupby="task", selection_strategy=ById())
    policy(by_hand(exp0(), 0))
    assert ids(policy.ext_mem[0]) == [6, 5, 4, 3] and ids(policy.ext_mem[1]) == [13, 12, 11, 10, 9]
    policy(by_hand(exp1(), 1))
    assert ids(policy.ext_mem[1]) == [29, 28, 27, 26, 25]
    replay = policy.replay_groups()
    assert list(replay) == [0, 1]
    assert sorted(ids(replay[0])) == [3, 4, 5, 6] and sorted(ids(replay[1])) == [25, 26, 27, 28, 29]
    assert policy.ext_mem[1].task_labels.tolist() == [1] * 5


def test_experience_groups_are_the_replay_groups():
    policy = ParametricStoragePolicy({}, 6, groupby="experience")
    policy(by_hand(exp0(), 0))
    policy(by_hand(exp1(), 1))
    assert policy.replay_groups().keys() == {0, 1}
    assert set(ids(policy.ext_mem[0])) <= set(range(14)) and set(ids(policy.ext_mem[1])) <= set(range(20, 30))


def test_random_selection_is_seeded():
    def stored(seed):
        policy = ParametricStoragePolicy({}, 5, groupby="class", seed=seed)
        policy(by_hand(exp0(), 0))
        return ids(policy.ext_mem[0]) + ids(policy.ext_mem[1])

    assert stored(3) == stored(3) and stored(3) != stored(4)
    assert isinstance(ParametricStoragePolicy({}, 5).selection_strategy, RandomExemplarsSelectionStrategy)


def test_rows_are_reused_in_place():
    policy = ParametricStoragePolicy({}, 4, groupby="experience", selection_strategy=ById())
    for e in range(6):
        policy(by_hand(samples(range(10 * e, 10 * e + 5), [e] * 5), e))
        storages = {group.storage.data_ptr() for group in policy.ext_mem.values()}
        assert len(storages) == 1 and policy.store.size == 4
    assert sizes(policy) == {0: 0, 1: 0, 2: 1, 3: 1, 4: 1, 5: 1}
    assert [ids(g) for g in policy.ext_mem.values()] == [[], [], [24], [34], [44], [54]]


def test_state_dict_round_trip():
    policy = ParametricStoragePolicy({}, 9, groupby="class", selection_strategy=ById())
    policy(by_hand(exp0(), 0))
    other = ParametricStoragePolicy({}, 9, groupby="class", selection_strategy=ById())
    other.load_state_dict(policy.state_dict())
    assert {k: ids(g) for k, g in other.ext_mem.items()} == {k: ids(g) for k, g in policy.ext_mem.items()}
    for p in (policy, other):
        p(by_hand(exp1(), 1))
    assert {k: ids(g) for k, g in other.ext_mem.items()} == {k: ids(g) for k, g in policy.ext_mem.items()}
    assert sorted(ids(other.replay_groups()[0])) == sorted(ids(policy.replay_groups()[0]))
    wrong = ParametricStoragePolicy({}, 9, groupby="task")
    with pytest.raises(ValueError, match=r"groupby of the saved memory \('class'\) differs"):
        wrong.load_state_dict(policy.state_dict())


def test_bad_input():
    with pytest.raises(ValueError, match="groupby must be one of None, 'class', 'experience', 'task', got 'classes'"):
        ParametricStoragePolicy({}, 5, groupby="classes")
    with pytest.raises(TypeError, match="selection_strategy must be a ClassExemplarsSelectionStrategy, got str"):
        ParametricStoragePolicy({}, 5, selection_strategy="random")

    class Broken(ClassExemplarsSelectionStrategy):
        def make_sorted_indices(self, strategy, data):
            return [0, 0]

    policy = ParametricStoragePolicy({}, 5, selection_strategy=Broken())
    with pytest.raises(ValueError, match=r"Broken.make_sorted_indices must return each index in \[0, 2\) once"):
        policy(by_hand(samples([1, 2], [0, 0]), 0))


def test_in_replay_plugin_with_class_groups():
    from clreplay.benchmarks import split_digits
    from clreplay.models import make_mlp
    from clreplay.training import Naive

    bench = split_digits()
    replay = ReplayPlugin(60, ParametricStoragePolicy({}, 60, groupby="class"))
    model = make_mlp(64, 10, [16], seed=0)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.05), train_mb_size=12,
                     train_epochs=0, plugins=[replay], seed=0)
    strategy.train(bench.train_stream[:3])
    assert sorted(replay.ext_mem) == sorted(c for e in bench.train_stream[:3] for c in e.classes_in_this_experience)
    assert sorted(sizes(replay.storage_policy).values()) == [10] * 6
    assert list(replay.storage_policy.replay_groups()) == [0, 1, 2]
