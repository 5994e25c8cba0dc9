import pytest
import torch

from clreplay.benchmarks import class_incremental, split_classes
from clreplay.data import ClassificationDataset


def data(n_classes=6, per_class=3):
    y = torch.arange(n_classes).repeat(per_class)
    return ClassificationDataset(torch.arange(len(y), dtype=torch.float32).unsqueeze(1), y)


def test_experiences_partition_the_classes():
    bench = class_incremental(data(), data(), 3, seed=1)
    classes = [set(e.classes_in_this_experience) for e in bench.train_stream]
    assert set().union(*classes) == set(range(6))
    assert sum(len(c) for c in classes) == 6
    for exp, test_exp in zip(bench.train_stream, bench.test_stream):
        assert set(exp.dataset.targets.tolist()) == set(exp.classes_in_this_experience)
        assert test_exp.classes_in_this_experience == exp.classes_in_this_experience
        assert len(exp.dataset) == 3 * len(exp.classes_in_this_experience)
    assert [e.current_experience for e in bench.train_stream] == [0, 1, 2]
    assert sum(len(e.dataset) for e in bench.train_stream) == 18


def test_seeded_class_order_is_reproducible():
    a = class_incremental(data(), data(), 3, seed=7).class_order
    b = class_incremental(data(), data(), 3, seed=7).class_order
    c = class_incremental(data(), data(), 3, seed=8).class_order
    assert a == b and sorted(a) == list(range(6))
    assert a != c
    assert class_incremental(data(), data(), 3, seed=None).class_order == list(range(6))


def test_fixed_class_order():
    bench = class_incremental(data(), data(), 2, class_order=[5, 4, 3, 2, 1, 0])
    assert [e.classes_in_this_experience for e in bench.train_stream] == [[3, 4, 5], [0, 1, 2]]


def test_task_labels_are_experience_indices():
    bench = class_incremental(data(), data(), 3, task_labels=True, seed=0)
    for i, exp in enumerate(bench.train_stream):
        assert exp.task_label == i
        assert exp.dataset.task_labels.tolist() == [i] * len(exp.dataset)
    assert bench.test_stream[2].dataset.task_labels.unique().tolist() == [2]
    plain = class_incremental(data(), data(), 3, seed=0)
    assert all(e.task_label == 0 for e in plain.train_stream)


def test_uneven_split_gives_the_first_experiences_one_more():
    assert split_classes(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]


@pytest.mark.parametrize("n", [0, -1])
def test_n_experiences_at_least_one(n):
    with pytest.raises(ValueError, match=f"n_experiences must be a positive int, got {n}"):
        class_incremental(data(), data(), n)


def test_n_experiences_at_most_classes():
    with pytest.raises(ValueError, match=r"n_experiences must be at most the number of classes \(6\), got 7"):
        class_incremental(data(), data(), 7)


def test_class_order_must_be_a_permutation():
    with pytest.raises(ValueError, match="class_order must be a permutation"):
        class_incremental(data(), data(), 2, class_order=[0, 1, 2])


def test_train_must_be_a_dataset():
    with pytest.raises(TypeError, match="train must be a ClassificationDataset"):
        class_incremental([1, 2], data(), 2)
