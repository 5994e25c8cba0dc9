"""Bad input across the public API: a ValueError/TypeError naming the argument, what was
expected and what was received; edge cases of the data handled correctly."""

import math
from types import SimpleNamespace

import pytest
import torch

from clreplay import (
    ClassBalancedStoragePolicy,
    ClosestToCenterSelectionStrategy,
    ExperienceBalancedStoragePolicy,
    HerdingSelectionStrategy,
    RandomExemplarsSelectionStrategy,
    ReplayPlugin,
)
from clreplay.benchmarks import Experience, class_incremental
from clreplay.data import ClassificationDataset
from clreplay.run import RunConfig
from clreplay.training import Naive

X = torch.arange(12.0).reshape(6, 2)
Y = torch.tensor([0, 0, 1, 1, 2, 2])


def dataset(x=X, y=Y):
    return ClassificationDataset(x, y)


def strategy(plugins=None, **kwargs):
    model = torch.nn.Linear(2, 3)
    return Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), plugins=plugins, **kwargs)


def by_hand(data, index=0):
    classes = sorted(set(data.targets.tolist()))
    return SimpleNamespace(experience=Experience(data, index, classes), device="cpu", eval_mb_size=4)


def sizes(policy):
    return {key: len(group) for key, group in policy.ext_mem.items()}


EMPTY = ClassificationDataset(torch.empty(0, 2), torch.empty(0, dtype=torch.long))


# -------------------------------------------------------------------- datasets
def test_dataset_arguments():
    with pytest.raises(TypeError, match="task_labels must hold integer labels, got 'a'"):
        ClassificationDataset(X, Y, "a")
    ds = dataset()
    # Float indices used to be truncated silently ([0.7] read sample 0).
    with pytest.raises(TypeError, match="indices must be integers, got dtype torch.float32"):
        ds.subset([0.7])
    with pytest.raises(TypeError, match=r"indices must be integers, got \['a'\]"):
        ds.subset(["a"])
    with pytest.raises(TypeError, match=r"task_label must be an int, got 1.5 \(float\)"):
        ds.with_task_label(1.5)
    with pytest.raises(TypeError, match=r"index must be an int, got 'a' \(str\)"):
        ds["a"]
    with pytest.raises(ValueError, match="device must name a torch device, got 'gpu0'"):
        ds.to("gpu0")
    assert ds.with_task_label(3).task_labels.tolist() == [3] * 6


def test_experience_arguments():
    with pytest.raises(TypeError, match="dataset must be a ClassificationDataset, got list"):
        Experience([1, 2], 0, [0])
    with pytest.raises(ValueError, match="current_experience must be a non-negative int, got -1"):
        Experience(dataset(), -1, [0])
    with pytest.raises(TypeError, match=r"task_label must be an int, got '0' \(str\)"):
        Experience(dataset(), 0, [0], "0")


# ------------------------------------------------------------------ benchmarks
def test_class_incremental_arguments():
    ds = dataset()
    with pytest.raises(TypeError, match=r"class_order must hold int class labels, got \['a', 'b', 'c'\]"):
        class_incremental(ds, ds, 3, class_order=["a", "b", "c"])
    with pytest.raises(TypeError, match="class_order must be .label. or a sequence of class labels, got 5"):
        class_incremental(ds, ds, 3, class_order=5)
    with pytest.raises(TypeError, match="task_labels must be a bool, got 'yes'"):
        class_incremental(ds, ds, 3, task_labels="yes")
    with pytest.raises(ValueError, match="train must hold at least one sample, got an empty dataset"):
        class_incremental(EMPTY, ds, 1)
    # Test samples of a class never trained on used to vanish from every test experience.
    with pytest.raises(ValueError, match=r"test must hold only classes of train \[0, 1\], got also \[2\]"):
        class_incremental(dataset(X[:4], Y[:4]), ds, 2)


def test_classes_with_a_single_sample():
    ds = ClassificationDataset(torch.randn(4, 2, generator=torch.Generator().manual_seed(0)),
                               torch.tensor([0, 1, 2, 3]))
    bench = class_incremental(ds, ds, 4, class_order=[0, 1, 2, 3])
    assert [len(e.dataset) for e in bench.train_stream] == [1, 1, 1, 1]
    model = torch.nn.Sequential(torch.nn.Linear(2, 4))
    policy = ClassBalancedStoragePolicy({}, 3, selection_strategy=HerdingSelectionStrategy(model, "0"))
    learner = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=2,
                    plugins=[ReplayPlugin(3, policy)], seed=0)
    for experience in bench.train_stream:
        learner.train(experience)
    # 3 slots over 4 classes of one sample: 3 // 4 = 0 each, then one each to 3 of them.
    assert sorted(sizes(policy).values()) == [0, 1, 1, 1]


# -------------------------------------------------------------------- strategy
def test_strategy_arguments():
    replay = ReplayPlugin(10)
    with pytest.raises(TypeError, match="plugins must be a sequence of StrategyPlugin or None, got ReplayPlugin"):
        strategy(plugins=replay)
    with pytest.raises(TypeError, match="evaluator must be a StrategyPlugin or None, got int"):
        strategy(evaluator=3)
    with pytest.raises(TypeError, match="stream must be an Experience or an iterable of them, got int"):
        strategy().eval(3)


def test_empty_experiences_train_nothing_and_store_nothing():
    replay = ReplayPlugin(4, ClassBalancedStoragePolicy({}, 4))
    learner = strategy([replay], train_mb_size=2, seed=0)
    before = learner.model.weight.detach().clone()
    learner.train(Experience(EMPTY, 0, []))  # used to divide by zero classes
    assert torch.equal(learner.model.weight, before) and replay.ext_mem == {}
    learner.train(Experience(dataset(), 1, [0, 1, 2]))
    stored = sizes(replay.storage_policy)
    assert sorted(stored.values()) == [1, 1, 2]  # 4 // 3 each, the spare one to a random class
    learner.train(Experience(EMPTY, 2, []))
    assert sizes(replay.storage_policy) == stored
    assert math.isnan(learner.eval(Experience(EMPTY, 0, []))[0])  # no samples: no accuracy

    policy = ExperienceBalancedStoragePolicy({}, 4)
    policy(by_hand(EMPTY, 0))
    policy(by_hand(dataset(), 1))
    assert sizes(policy) == {0: 0, 1: 4}


def test_memory_larger_than_everything_seen_keeps_everything():
    for policy in (ExperienceBalancedStoragePolicy({}, 100), ClassBalancedStoragePolicy({}, 100)):
        policy(by_hand(dataset(), 0))
        policy(by_hand(dataset(X[:2] + 100, torch.tensor([3, 3])), 1))
        stored = torch.cat([g.get_batch(torch.arange(len(g)))[0] for g in policy.ext_mem.values()])
        assert sorted(stored[:, 0].tolist()) == [0, 2, 4, 6, 8, 10, 100, 102]


# ------------------------------------------------------------------------ replay
def test_policy_arguments():
    eb, cb = ExperienceBalancedStoragePolicy({}, 5), ClassBalancedStoragePolicy({}, 5)
    for policy in (eb, cb):
        with pytest.raises(TypeError, match="strategy must have an 'experience' attribute with a ClassificationDataset '.dataset' and an int '.current_experience', got int"):
            policy(3)
        with pytest.raises(TypeError, match="state must be a dict, got list"):
            policy.load_state_dict([])
    with pytest.raises(TypeError, match="data must be a ClassificationDataset, got list"):
        eb.subsample_single([1, 2, 3], 1)
    with pytest.raises(TypeError, match="cutoff_per_exp must be a dict from class to size, got int"):
        cb.cutoff_memory(3)
    replay = ReplayPlugin(5)
    with pytest.raises(TypeError, match="state must be a dict, got int"):
        replay.load_state_dict(3)
    with pytest.raises(KeyError, match=r"must have keys \['mem_size', 'rng', 'storage_policy'\], got \['mem_size'\]"):
        replay.load_state_dict({"mem_size": 5})


def test_selection_arguments():
    with pytest.raises(TypeError, match="data must be a sized dataset, got int"):
        RandomExemplarsSelectionStrategy().make_sorted_indices(None, 3)
    herding = HerdingSelectionStrategy(torch.nn.Linear(2, 2), "")
    with pytest.raises(TypeError, match="data must be a ClassificationDataset, got list"):
        herding.make_sorted_indices(by_hand(dataset()), [1, 2])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("selection", [HerdingSelectionStrategy, ClosestToCenterSelectionStrategy])
def test_non_finite_features_are_an_error_and_leave_the_memory_as_it_was(bad, selection):
    model = torch.nn.Sequential(torch.nn.Identity())
    policy = ClassBalancedStoragePolicy({}, 4, selection_strategy=selection(model, "0"))
    policy(by_hand(dataset()))
    before = {c: g.get_batch(torch.arange(len(g)))[0].clone() for c, g in policy.ext_mem.items()}
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]])
    x[3, 1] = bad
    with pytest.raises(ValueError, match="features must be finite, got NaN or inf in 1 of 3 samples"):
        policy(by_hand(dataset(x, torch.tensor([1, 3, 3, 3])), 1))
    assert policy.seen_classes == {0, 1, 2}
    after = {c: g.get_batch(torch.arange(len(g)))[0] for c, g in policy.ext_mem.items()}
    assert list(after) == list(before) and all(torch.equal(before[c], after[c]) for c in before)


# ---------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "field, value, error, message",
    [
        ("momentum", "a", TypeError, "momentum must be a number in [0.0, 1.0), got 'a' (str)"),
        ("hidden", 5, TypeError, "hidden must be a list of positive ints, got 5"),
        ("replay", "no", TypeError, "replay must be a bool, got 'no'"),
        ("output", 3, TypeError, "output must be a path or None, got 3 (int)"),
        ("checkpoint_dir", 3, TypeError, "checkpoint_dir must be a path or None, got 3 (int)"),
        ("lr", float("inf"), ValueError, "lr must be a positive number, got inf"),
        ("lr", float("nan"), ValueError, "lr must be a positive number, got nan"),
        ("init", "he", ValueError, "init must be one of 'default', 'xavier', got 'he'"),
    ],
)
def test_run_config_fields(field, value, error, message):
    with pytest.raises(error) as info:
        RunConfig(**{field: value}).validate()
    assert str(info.value) == message
