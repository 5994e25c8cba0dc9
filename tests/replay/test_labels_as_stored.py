"""The memory's labels are what is stored now: policies that overwrite rows in place
(the reservoir, online updates) must never leave a group's ``targets`` or
``task_labels`` at the values of an earlier update."""

import torch
from conftest import by_hand, make_dataset

from clreplay import (
    OnlineReplayPlugin,
    ParametricStoragePolicy,
    ReplayPlugin,
    ReservoirSamplingStoragePolicy,
)
from clreplay.benchmarks import Experience, class_incremental
from clreplay.data import ClassificationDataset
from clreplay.evaluation.evaluator import memory_composition
from clreplay.replay.mixing.draws import group_by_task
from clreplay.training import Naive


def stored(policy, name):
    """Column ``name`` of every stored row, read from the store itself (the truth)."""
    rows = torch.cat([group.indices for group in policy.ext_mem.values()])
    return policy.store.read(name, rows)


def test_reservoir_labels_follow_each_update():
    # The README's example: 5 experiences of 1,000 samples of one class each, memory 100.
    policy = ReservoirSamplingStoragePolicy(ext_mem={}, mem_size=100, seed=0)
    counts = []
    for i in range(5):
        data = ClassificationDataset(torch.randn(1000, 4, generator=torch.Generator().manual_seed(i)),
                                     torch.full((1000,), i))
        policy(by_hand(data, i))
        view = policy.ext_mem[0]
        assert view.targets.tolist() == stored(policy, "y").tolist()
        counts.append(torch.bincount(view.targets, minlength=5).tolist())
    assert counts[0] == [100, 0, 0, 0, 0]
    # Every later experience replaces some rows: the counts must move with them.
    assert all(sum(c) == 100 for c in counts)
    assert all(c[i] > 0 for i, c in enumerate(counts))
    assert counts[-1] == stored(policy, "y").bincount(minlength=5).tolist()


def test_view_labels_read_once_then_updated_in_place_batch_by_batch():
    policy = ReservoirSamplingStoragePolicy({}, 8, seed=4)
    first = make_dataset([0] * 8, task=0)
    policy(by_hand(first, 0))
    assert policy.ext_mem[0].targets.tolist() == [0] * 8  # read (and cached) before the overwrite
    later = make_dataset([1] * 200, start=8, task=3)
    strategy = by_hand(later, 1)
    for start in range(0, 200, 10):
        x, y, t = later.get_batch(torch.arange(start, start + 10))
        policy.update_from_batch(strategy, x, y, t)
        group = policy.ext_mem[0]
        assert group.targets.tolist() == stored(policy, "y").tolist()
        assert group.task_labels.tolist() == stored(policy, "t").tolist()
    assert set(policy.ext_mem[0].targets.tolist()) == {0, 1} or policy.ext_mem[0].targets.tolist() == [1] * 8


def test_parametric_streaming_groups_read_current_labels():
    policy = ParametricStoragePolicy({}, 12, groupby=None, seed=1)
    for i in range(4):
        data = make_dataset([i] * 30, start=30 * i)
        strategy = by_hand(data, i)
        for start in range(0, 30, 5):
            x, y, t = data.get_batch(torch.arange(start, start + 5))
            policy.update_from_batch(strategy, x, y, t)
            for key, group in policy.ext_mem.items():
                assert group.targets.tolist() == policy.store.read("y", group.indices).tolist(), key


def _task_benchmark():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 6, generator=g)
    y = torch.arange(600) % 6
    train = ClassificationDataset(x, y)
    test = ClassificationDataset(x[:60], y[:60])
    return class_incremental(train, test, 3, task_labels=True, class_order=list(range(6)))


def test_results_memory_make_up_and_task_groups_follow_the_reservoir():
    bench = _task_benchmark()
    model = torch.nn.Linear(6, 6)
    replay = OnlineReplayPlugin(mem_size=40)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=10,
                     plugins=[replay], seed=0)
    for experience in bench.train_stream:
        strategy.train(experience)
        truth_y = stored(replay.storage_policy, "y")
        truth_t = stored(replay.storage_policy, "t")
        made_up = memory_composition(strategy)["classes"]
        labels, counts = torch.unique(truth_y, return_counts=True)
        assert made_up == {str(c): n for c, n in zip(labels.tolist(), counts.tolist())}
        by_task = group_by_task(list(replay.ext_mem.values()))
        assert {t: len(g) for t, g in by_task.items()} == {
            int(t): int((truth_t == t).sum()) for t in torch.unique(truth_t)}
    # The last experience's classes (4, 5; task 2) must be in the memory by now.
    assert {"4", "5"} <= set(memory_composition(strategy)["classes"])


def test_task_balanced_replay_over_a_reservoir_balances_by_current_tasks():
    bench = _task_benchmark()
    policy = ReservoirSamplingStoragePolicy({}, 30, seed=0)
    for experience in bench.train_stream[:2]:
        policy(by_hand(experience.dataset, experience.current_experience))
    plugin = ReplayPlugin(30, policy, task_balanced=True, batch_size_mem=6)
    truth_t = stored(policy, "t")
    strategy = by_hand(bench.train_stream[2].dataset, 2)
    strategy.train_mb_size, strategy.generator = 10, torch.Generator().manual_seed(0)
    plugin.before_training_exp(strategy)
    source = strategy.batch_source
    assert sorted(source.group_sizes) == sorted(int((truth_t == t).sum()) for t in torch.unique(truth_t))
    for mb in source:
        replayed = mb.t[mb.from_memory]
        # 6 replayed rows over the 2 tasks in memory: 3 each.
        assert torch.bincount(replayed, minlength=2)[:2].tolist() == [3, 3]
        break


def test_experience_from_a_memory_view_keeps_current_labels():
    policy = ReservoirSamplingStoragePolicy({}, 4, seed=0)
    policy(by_hand(make_dataset([0, 0, 0, 0]), 0))
    view = policy.ext_mem[0]
    experience = Experience(view, 0, [0])
    assert experience.dataset.targets.tolist() == [0, 0, 0, 0]
    policy(by_hand(make_dataset([1] * 400, start=4), 1))
    assert experience.dataset.targets.tolist() == stored(policy, "y").tolist()
