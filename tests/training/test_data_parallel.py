"""Slicing global mini-batches over ranks, and the strategy's distributed options in one process."""

import pytest
import torch
from torch.nn.parallel import DistributedDataParallel

from clreplay import distributed as idist
from clreplay.benchmarks import Experience
from clreplay.data import ClassificationDataset, MiniBatch
from clreplay.data.batching import DatasetBatchSource
from clreplay.training import Naive, RunContext
from clreplay.training.data_parallel import (
    DataParallel,
    ShardedBatchSource,
    segment_shares,
    shard_minibatch,
)


def test_segment_shares_give_every_rank_an_even_share_of_each_segment_and_of_the_batch():
    assert segment_shares([11, 21], 2) == [[6, 5], [10, 11]]
    assert segment_shares([1, 0], 2) == [[1, 0], [0, 0]]
    assert segment_shares([3, 4], 3) == [[1, 1, 1], [2, 1, 1]]
    assert segment_shares([1, 1, 1], 3) == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


def _replay_batch(sizes):
    """A stream segment then memory draws of the given sizes; x and y number the rows,
    the j-th memory row of a draw comes from store row 100 * (draw + 1) + j."""
    n = sizes[0]
    mb = MiniBatch(torch.arange(n, dtype=torch.float32).unsqueeze(1), torch.arange(n),
                   torch.zeros(n, dtype=torch.long))
    for d, size in enumerate(sizes[1:]):
        rows = torch.arange(size) + 100 * (d + 1)
        ids = torch.arange(len(mb), len(mb) + size)
        mb = mb.append(ids.float().unsqueeze(1), ids, torch.zeros(size, dtype=torch.long), name=f"draw{d}",
                       rows=rows, columns={"logits": rows.float().unsqueeze(1) * 2})
    return mb


@pytest.mark.parametrize("sizes, world", [([11, 21], 2), ([5], 2), ([1, 8], 2), ([7, 5], 3), ([0, 3], 4),
                                          ([3, 2, 2], 2), ([10, 10, 10], 4)])
def test_the_slices_partition_the_global_batch_with_their_segments_rows_and_columns(sizes, world):
    mb = _replay_batch(sizes)
    slices = [shard_minibatch(mb, r, world) for r in range(world)]
    lengths = [len(s) for s in slices]
    assert max(lengths) - min(lengths) <= 1 and sum(lengths) == len(mb)
    assert sorted(torch.cat([s.y for s in slices]).tolist()) == list(range(len(mb)))
    for local in slices:
        assert [s.name for s in local.segments] == [s.name for s in mb.segments]
        assert torch.equal(local.x[:, 0].long(), local.y)  # rows stay together
        assert torch.equal(mb.from_memory[local.y], local.from_memory)
        for segment, whole in zip(local.segments, mb.segments):
            assert segment.total == len(whole)  # the global size, for the losses' means
            ids = local.y[segment.slice]
            assert bool(((ids >= whole.start) & (ids < whole.stop)).all())  # rows stay in their segment
            if segment.from_memory:
                assert torch.equal(segment.rows, whole.rows[ids - whole.start])
                assert torch.equal(segment.columns["logits"][:, 0], segment.rows.float() * 2)


def test_a_plain_batch_is_cut_into_views():
    mb = MiniBatch(torch.arange(10.0).unsqueeze(1), torch.arange(10), torch.zeros(10, dtype=torch.long))
    local = shard_minibatch(mb, 1, 2)
    assert len(local.stream) == 5 and local.y.tolist() == [5, 6, 7, 8, 9]
    assert local.x.data_ptr() == mb.x[5:].data_ptr() and local.stream.total == 10


def test_the_sharded_source_yields_slices_and_says_how_large_the_global_batch_was():
    data = ClassificationDataset(torch.arange(7.0).unsqueeze(1), torch.arange(7))
    source = ShardedBatchSource(DatasetBatchSource(data, 4, shuffle=False), rank=1, world_size=2)
    assert len(source) == 2
    seen = []
    for mb in source:
        seen.append((mb.y.tolist(), source.global_size, source.local_size))
    assert seen == [([2, 3], 4, 2), ([6], 3, 1)]
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
    with pytest.raises(TypeError, match="distributed must be a bool or a dict of DistributedDataParallel "
                                        "options, got 'yes'"):
        _strategy(distributed="yes")
    with pytest.raises(ValueError, match=r"distributed options must be among \['find_unused_parameters', "
                                         r".*got \['bucket_size'\]"):
        DataParallel(torch.nn.Linear(1, 1), RunContext(world_size=2), {"bucket_size": 1})
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


@pytest.fixture
def group_of_one(monkeypatch):
    """A gloo process group of this process alone (DDP works in a group of one)."""
    from processes import free_port

    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(name, value)
    idist.init_from_env()
    yield
    idist.teardown()


class _TwoHeads(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.heads = torch.nn.Linear(3, 4), torch.nn.ModuleList([torch.nn.Linear(4, 2) for _ in range(2)])
        self.head = 0

    def forward(self, x):
        return self.heads[self.head](self.body(x))


def _step(parallel, module, x, y):
    output = module(x)
    parallel.source = type("Slice", (), {"local_size": len(y), "global_size": len(y), "replicate": False})()
    parallel.backward(parallel.loss_share(torch.nn.functional.cross_entropy(output, y), output))


def test_training_goes_through_ddp_which_is_wrapped_again_when_the_trainable_parameters_change(group_of_one):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    parallel = DataParallel(model, RunContext(world_size=1))
    wrapper = parallel.module()
    assert isinstance(wrapper, DistributedDataParallel) and wrapper.module is model
    assert parallel.module() is wrapper  # nothing changed
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 1, 0])
    _step(parallel, wrapper, x, y)
    expected = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), model[2].weight)[0]
    torch.testing.assert_close(model[2].weight.grad, expected)  # a group of one: the gradient itself
    model[0].requires_grad_(False)  # a layer frozen: DDP must not wait for its gradients
    assert parallel.module() is not wrapper
    with pytest.raises(RuntimeError, match="the training forward must go through strategy.train_model"):
        _step(parallel, model, x, y)  # through the plain module: the sums would be skipped


def test_a_model_that_leaves_parameters_unused_needs_the_ddp_option_and_trains_with_it(group_of_one):
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 1, 0])
    model = _TwoHeads()
    parallel = DataParallel(model, RunContext(world_size=1))
    _step(parallel, parallel.module(), x, y)
    with pytest.raises(RuntimeError, match="find_unused_parameters=True"):  # DDP's own message
        _step(parallel, parallel.module(), x, y)
    model = _TwoHeads()
    parallel = DataParallel(model, RunContext(world_size=1), {"find_unused_parameters": True})
    for head in (0, 1, 0):
        model.head = head
        model.zero_grad(set_to_none=True)
        _step(parallel, parallel.module(), x, y)
        assert model.heads[head].weight.grad is not None and model.heads[1 - head].weight.grad is None
