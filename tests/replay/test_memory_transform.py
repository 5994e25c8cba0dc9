"""ReplayPlugin's memory_transform and task_balanced options."""

import pytest
import torch
from conftest import make_dataset

from clreplay import ExperienceBalancedStoragePolicy, ReplayPlugin, StrategyPlugin
from clreplay.benchmarks import Experience
from clreplay.data import ClassificationDataset
from clreplay.replay import ReplayBatchSource, group_by_task
from clreplay.training import Naive


class Recorder(StrategyPlugin):
    def __init__(self):
        self.batches = []
        self.memory_ids = []

    def before_training_exp(self, strategy, **kwargs):
        self.batches.append([])
        memory = strategy.plugins[0].ext_mem
        self.memory_ids.append({i for g in memory.values() for i in g.storage[g.indices, 0].tolist()})

    def before_forward(self, strategy, **kwargs):
        self.batches[-1].append((strategy.mb_x.clone(), strategy.mb_y.clone(), strategy.mb_task_id.clone()))


def stream():
    first = make_dataset([0] * 20, start=0, task=0)
    second = make_dataset([1] * 23, start=100, task=0)
    return [Experience(first, 0, [0]), Experience(second, 1, [1])]


def train(plugin, mb=6, seed=0):
    recorder = Recorder()
    model = torch.nn.Linear(2, 2)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=1e-4), train_mb_size=mb,
                     train_epochs=2, plugins=[plugin, recorder], seed=seed)
    strategy.train(stream())
    return recorder.batches[1], model, recorder.memory_ids[1]


def mark(x):
    """Memory samples become -1 - x: negative ids, told apart from current samples."""
    seen_by_transform.append(x[:, 0].tolist())
    return -1 - x


seen_by_transform = []


@pytest.mark.parametrize("batch_size_mem, current_share", [(4, 6), (None, 3)])
def test_memory_transform_touches_memory_samples_only(batch_size_mem, current_share):
    seen_by_transform.clear()
    replay = ReplayPlugin(10, batch_size_mem=batch_size_mem, memory_transform=mark)
    batches, _, memory_ids = train(replay)
    assert len(memory_ids) == 10
    transformed = 0
    for x, y, _ in batches:
        n_cur = min(current_share, int((y == 1).sum()))
        current, memory = x[:n_cur, 0], x[n_cur:, 0]
        assert (y[:n_cur] == 1).all() and (y[n_cur:] == 0).all()
        assert set(current.tolist()) <= set(range(100, 123))  # untouched current samples
        assert set((-1 - memory).tolist()) <= memory_ids  # every memory sample transformed
        transformed += len(memory)
    # The transform saw the memory samples, stacked per batch, and nothing else.
    assert all(set(ids) <= memory_ids for ids in seen_by_transform)
    assert sum(len(ids) for ids in seen_by_transform) == transformed


def test_identity_transform_changes_nothing():
    plain, model_a, _ = train(ReplayPlugin(10, batch_size_mem=4))
    identity, model_b, _ = train(ReplayPlugin(10, batch_size_mem=4, memory_transform=lambda x: x))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(plain, identity))
    assert torch.equal(model_a.weight, model_b.weight)


def test_options_off_give_the_default_batches():
    default, model_a, _ = train(ReplayPlugin(10))
    off, model_b, _ = train(ReplayPlugin(10, batch_size_mem=None, memory_transform=None, task_balanced=False))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(default, off))
    assert torch.equal(model_a.weight, model_b.weight)


def test_transform_errors():
    with pytest.raises(TypeError, match="memory_transform must be callable or None, got int"):
        ReplayPlugin(10, memory_transform=3)
    with pytest.raises(TypeError, match="memory_transform must return a Tensor, got list"):
        train(ReplayPlugin(10, memory_transform=lambda x: x.tolist()))
    with pytest.raises(ValueError, match=r"memory_transform must keep one row per sample \(3\), got shape \(6,\)"):
        train(ReplayPlugin(10, memory_transform=lambda x: x.flatten()))
    with pytest.raises(TypeError, match="task_balanced must be a bool, got 1"):
        ReplayPlugin(10, task_balanced=1)


def mixed_task_memory():
    """One stored experience whose samples carry task labels 0 (15) and 1 (5)."""
    data = ClassificationDataset(torch.arange(20.).unsqueeze(1), torch.zeros(20, dtype=torch.long),
                                 torch.tensor([0] * 15 + [1] * 5))
    return {0: data}


@pytest.mark.parametrize("batch_size_mem, expected", [(4, [2, 2]), (None, [3, 3])])
def test_task_balanced_splits_the_memory_part_over_task_labels(batch_size_mem, expected):
    policy = ExperienceBalancedStoragePolicy(mixed_task_memory(), 20)
    replay = ReplayPlugin(20, policy, batch_size_mem=batch_size_mem, task_balanced=True)
    current = ClassificationDataset(100 + torch.arange(30.).unsqueeze(1), torch.ones(30, dtype=torch.long), 2)
    recorder = Recorder()
    model = torch.nn.Linear(1, 2)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=1e-4),
                     train_mb_size=6 if batch_size_mem else 9, plugins=[replay, recorder], seed=0)
    strategy.train(Experience(current, 1, [1], task_label=2))
    for _, _, t in recorder.batches[0][:-1]:
        counts = torch.bincount(t, minlength=3).tolist()
        assert counts[:2] == expected
    assert isinstance(strategy.batch_source, ReplayBatchSource)


def test_group_by_task_keeps_order_within_tasks():
    groups = group_by_task([mixed_task_memory()[0], ClassificationDataset(torch.tensor([[50.0]]), [3], 1)])
    assert list(groups) == [0, 1]
    assert groups[1].get_batch(torch.arange(6))[0].flatten().tolist() == [15, 16, 17, 18, 19, 50]
    assert group_by_task([]) == {}
