"""Slicing global mini-batches over ranks, and the strategy's distributed options in one process."""

import pytest
import torch

from clreplay.benchmarks import Experience
from clreplay.data import ClassificationDataset, MiniBatch
from clreplay.data.batching import DatasetBatchSource
from clreplay.training import Naive, RunContext
from clreplay.training.data_parallel import (
    DataParallel,
    ShardedBatchSource,
    shard_minibatch,
    slice_bounds,
)


def test_slice_bounds_give_every_rank_an_even_share_current_rows_first():
    assert [slice_bounds(11, 21, r, 2) for r in range(2)] == [((0, 6), (0, 10)), ((6, 11), (10, 21))]
    assert [slice_bounds(1, 0, r, 2) for r in range(2)] == [((0, 1), (0, 0)), ((1, 1), (0, 0))]
    assert [slice_bounds(3, 4, r, 3) for r in range(3)] == [((0, 1), (0, 2)), ((1, 2), (2, 3)),
                                                           ((2, 3), (3, 4))]


def _replay_batch(n_current, n_memory, *, interleaved=False):
    n = n_current + n_memory
    mask = torch.zeros(n, dtype=torch.bool)
    mask[n_current:] = True
    if interleaved:
        mask = mask[torch.randperm(n, generator=torch.Generator().manual_seed(0))]
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1)
    rows = torch.arange(100, 100 + n_memory)
    return MiniBatch(x, torch.arange(n), torch.zeros(n, dtype=torch.long), from_memory=mask,
                     memory_rows=rows, extras={"logits": rows.float().unsqueeze(1) * 2})


@pytest.mark.parametrize("n_current, n_memory, world", [(11, 21, 2), (5, 0, 2), (1, 8, 2), (7, 5, 3), (0, 3, 4)])
@pytest.mark.parametrize("interleaved", [False, True])
def test_the_slices_partition_the_global_batch_with_their_memory_rows_and_extras(
        n_current, n_memory, world, interleaved):
    mb = _replay_batch(n_current, n_memory, interleaved=interleaved)
    slices = [shard_minibatch(mb, r, world) for r in range(world)]
    sizes = [len(s) for s, _ in slices]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == len(mb)
    seen = torch.cat([s.y for s, _ in slices])
    assert sorted(seen.tolist()) == list(range(len(mb)))
    for local, n_local_current in slices:
        assert not local.from_memory[:n_local_current].any() and local.from_memory[n_local_current:].all()
        assert torch.equal(local.x[:, 0].long(), local.y)  # rows stay together
        assert torch.equal(mb.from_memory[local.y], local.from_memory)
        if local.n_memory:
            replayed = local.y[local.from_memory]
            # The j-th replayed row of the global batch has store row 100 + j.
            ordinal = torch.cumsum(mb.from_memory.long(), 0)[replayed] - 1
            assert torch.equal(local.memory_rows, 100 + ordinal)
            assert torch.equal(local.extras["logits"][:, 0], local.memory_rows.float() * 2)


def test_a_plain_batch_is_cut_into_views():
    mb = MiniBatch(torch.arange(10.0).unsqueeze(1), torch.arange(10), torch.zeros(10, dtype=torch.long))
    local, n_current = shard_minibatch(mb, 1, 2)
    assert n_current == 5 and local.y.tolist() == [5, 6, 7, 8, 9]
    assert local.x.data_ptr() == mb.x[5:].data_ptr() and local.memory_rows is None


def test_the_sharded_source_yields_slices_and_says_how_large_the_global_batch_was():
    data = ClassificationDataset(torch.arange(7.0).unsqueeze(1), torch.arange(7))
    source = ShardedBatchSource(DatasetBatchSource(data, 4, shuffle=False), rank=1, world_size=2)
    assert len(source) == 2
    seen = []
    for mb in source:
        seen.append((mb.y.tolist(), source.global_size, source.local_size, source.current_rows))
    assert seen == [([2, 3], 4, 2, 2), ([6], 3, 1, 1)]
    with pytest.raises(TypeError, match="wraps must be a BatchSource, got list"):
        ShardedBatchSource([], 0, 2)


class _Counting(DatasetBatchSource):
    """A source with a state and its own way of skipping batches (as online replay has)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.epochs, self.skipped = 3, []

    def state_dict(self):
        return {"epochs": self.epochs}

    def load_state_dict(self, state):
        self.epochs = state["epochs"]

    def iterate_from(self, start):
        self.skipped.append(start)
        batches = iter(self)
        for _ in range(start):
            next(batches)
        return batches


def test_the_sharded_source_has_the_wrapped_sources_state_and_resumes_its_epoch_then_slices():
    data = ClassificationDataset(torch.arange(11.0).unsqueeze(1), torch.arange(11))
    wrapped = _Counting(data, 4, shuffle=False)
    source = ShardedBatchSource(wrapped, rank=1, world_size=2)
    assert source.state_dict() == {"epochs": 3}
    source.load_state_dict({"epochs": 7})
    assert wrapped.epochs == 7
    # Global batches [0..3], [4..7], [8..10]: skip the first, then rank 1's slices.
    seen = [(mb.y.tolist(), source.global_size) for mb in source.iterate_from(1)]
    assert seen == [([6, 7], 4), ([10], 3)] and wrapped.skipped == [1]


def _strategy(**kwargs):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    return Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), **kwargs)


def test_the_strategy_checks_its_distributed_options_before_training():
    with pytest.raises(TypeError, match="distributed must be a bool, got 'yes'"):
        _strategy(distributed="yes")
    with pytest.raises(ValueError, match=r"train_mb_size must be a multiple of the world size \(2\).*got 3"):
        _strategy(train_mb_size=3, context=RunContext(world_size=2, rank=1))
    with pytest.raises(ValueError, match="context.world_size is 2 but no process group is initialized"):
        _strategy(train_mb_size=4, context=RunContext(world_size=2, rank=1))
    with pytest.raises(ValueError, match="no process group is initialized"):
        DataParallel(torch.nn.Linear(1, 1), RunContext(world_size=2))


def test_distributed_without_a_process_group_is_the_single_process_run():
    data = ClassificationDataset(torch.randn(40, 3, generator=torch.Generator().manual_seed(1)),
                                 torch.arange(40) % 2)
    runs = []
    for distributed in (False, True):
        strategy = _strategy(train_mb_size=8, distributed=distributed)
        assert strategy.context == RunContext(seed=0)
        strategy.train(Experience(data, 0, [0, 1]))
        runs.append(strategy.model.weight.detach().clone())
    assert torch.equal(runs[0], runs[1])
