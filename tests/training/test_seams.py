"""The seams a method builds on: the mini-batch record, criterion(), predict(), the batch
source contract and the run context."""

import pytest
import torch
from torch import nn

from clreplay import MiniBatch, ReplayPlugin, RunContext, StrategyPlugin
from clreplay.benchmarks import class_incremental
from clreplay.data import BatchSource, ClassificationDataset, DatasetBatchSource
from clreplay.training import BaseStrategy, Naive


def tiny_benchmark():
    x = torch.arange(48.).view(24, 2)
    y = torch.arange(24) % 4
    data = ClassificationDataset(x, y)
    return class_incremental(data, data, 2, seed=0)


def make(cls=Naive, plugins=(), **kwargs):
    model = nn.Linear(2, 4)
    with torch.no_grad():
        model.weight.fill_(0.1), model.bias.zero_()
    return cls(model, torch.optim.SGD(model.parameters(), lr=0.01), train_mb_size=4,
               plugins=list(plugins), seed=0, **kwargs)


class Record(StrategyPlugin):
    def __init__(self):
        self.batches, self.losses = [], []

    def before_forward(self, strategy, **kwargs):
        self.batches.append(strategy.mb)

    def before_backward(self, strategy, **kwargs):
        self.losses.append(float(strategy.loss.detach()))


def test_the_current_batch_is_one_record_read_also_as_mb_x_mb_y_mb_task_id():
    record = Record()
    strategy = make(plugins=[record])
    strategy.train(tiny_benchmark().train_stream[0])
    mb = record.batches[0]
    assert isinstance(mb, MiniBatch) and mb.n_memory == 0 and not mb.from_memory.any()
    strategy.mb = mb
    assert strategy.mb_x is mb.x and strategy.mb_y is mb.y and strategy.mb_task_id is mb.t
    strategy.mb_x = mb.x * 2  # plugins may still replace the samples
    assert torch.equal(strategy.mb.x, mb.x)


def test_replayed_rows_are_marked_and_point_to_their_store_rows():
    bench = tiny_benchmark()
    replay = ReplayPlugin(8)

    class Check(StrategyPlugin):  # while the batch trains: the memory changes after the experience
        checked = 0

        def before_forward(self, strategy, **kwargs):
            mb, store = strategy.mb, replay.storage_policy.store
            if strategy.clock.train_exp_counter == 0:
                assert mb.n_memory == 0 and [s.name for s in mb.segments] == ["stream"]
                return
            assert [s.name for s in mb.segments] == ["stream", "replay"]
            rows = mb.segment("replay").rows
            assert mb.n_memory == len(rows) > 0
            assert not mb.from_memory[: len(mb) - mb.n_memory].any()  # current samples first
            assert torch.equal(mb.x[mb.from_memory], store.read_x(rows))
            assert torch.equal(mb.y[mb.from_memory], store.read("y", rows))
            assert set(mb.y[mb.from_memory].tolist()) <= set(bench.train_stream[0].classes_in_this_experience)
            Check.checked += 1

    strategy = make(plugins=[replay, Check()])
    strategy.train(bench.train_stream[:2])
    assert Check.checked == 6  # 12 current samples, 2 + 2 a batch


def test_criterion_is_the_seam_for_the_loss():
    class Doubled(Naive):
        def criterion(self):
            return 2 * self.loss_fn(self.mb_output, self.mb.y)

    plain, doubled = Record(), Record()
    make(plugins=[plain]).train(tiny_benchmark().train_stream[0])
    make(Doubled, plugins=[doubled]).train(tiny_benchmark().train_stream[0])
    assert doubled.losses[0] == pytest.approx(2 * plain.losses[0])


def test_predict_is_the_one_prediction_rule_of_eval():
    class AlwaysClassOne(Naive):
        def predict(self, x):
            scores = torch.zeros(len(x), 4)
            scores[:, 1] = 1.0
            return scores

    bench = tiny_benchmark()
    accuracies = make(AlwaysClassOne).eval(bench.test_stream)
    expected = {e.current_experience: float((e.dataset.targets == 1).float().mean())
                for e in bench.test_stream}
    assert accuracies == expected


class ReplaceSource(StrategyPlugin):
    def __init__(self, wrap=False):
        self.wrap = wrap

    def before_training_exp(self, strategy, **kwargs):
        source = DatasetBatchSource(strategy.experience.dataset, 2, shuffle=False)
        if self.wrap:
            source.wraps = strategy.batch_source
        strategy.batch_source = source


def test_two_plugins_that_replace_the_batch_source_are_refused():
    strategy = make(plugins=[ReplaceSource(), ReplaceSource()])
    with pytest.raises(ValueError, match="batch_source was already replaced in this experience by a "
                                         "DatasetBatchSource; got a DatasetBatchSource that does not extend it"):
        strategy.train(tiny_benchmark().train_stream[0])
    make(plugins=[ReplaceSource(), ReplaceSource(wrap=True)]).train(tiny_benchmark().train_stream[0])
    with pytest.raises(TypeError, match="batch_source must be a BatchSource, got list"):
        make().batch_source = []


class EvenSamplesOnly(Naive):
    """A strategy with its own batch source: the even positions of the experience, in order."""

    def make_train_batch_source(self, experience):
        data = experience.dataset
        return DatasetBatchSource(data.subset(torch.arange(0, len(data), 2)), 3, shuffle=False)


def test_replay_extends_a_strategy_s_own_batch_source():
    record = Record()
    strategy = make(EvenSamplesOnly, plugins=[ReplayPlugin(6, batch_size_mem=2), record])
    bench = tiny_benchmark()
    strategy.train(bench.train_stream[0])
    record.batches.clear()
    strategy.train(bench.train_stream[1])
    data = bench.train_stream[1].dataset
    own = [x for x, _, _ in DatasetBatchSource(data.subset(torch.arange(0, len(data), 2)), 3, shuffle=False)]
    assert len(record.batches) == len(own)
    for mb, expected in zip(record.batches, own):
        assert torch.equal(mb.x[~mb.from_memory], expected) and mb.n_memory == 2


def test_the_run_context_reaches_every_plugin_once():
    class Seen(StrategyPlugin):
        def __init__(self):
            self.contexts = []

        def setup(self, context):
            self.contexts.append(context)

    seen = Seen()
    strategy = make(plugins=[seen])
    strategy.train(tiny_benchmark().train_stream[0])
    assert seen.contexts == [RunContext(seed=0, rank=0, world_size=1)] and strategy.context.seed == 0
    replay = ReplayPlugin(8)
    make(plugins=[replay])
    policy = replay.storage_policy
    assert policy.seed == RunContext(seed=0).seed_for("storage_policy")
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"seed \(3\) must equal context.seed \(0\)"):
        BaseStrategy(model, torch.optim.SGD(model.parameters(), lr=0.1), seed=3, context=RunContext(seed=0))


@pytest.mark.parametrize("kwargs, err, message", [
    ({"seed": -1}, ValueError, "seed must be a non-negative int, got -1"),
    ({"rank": 2, "world_size": 2}, ValueError, r"rank must be < world_size \(2\), got 2"),
    ({"world_size": 0}, ValueError, "world_size must be a positive int, got 0"),
])
def test_run_context_arguments(kwargs, err, message):
    with pytest.raises(err, match=message):
        RunContext(**kwargs)


def test_a_batch_source_yielding_tuples_still_trains():
    class Tuples(BatchSource):
        def __init__(self, data):
            self.data = data

        def __len__(self):
            return 1

        def __iter__(self):
            yield self.data.get_batch(torch.arange(4))

    class TupleSource(Naive):
        def make_train_batch_source(self, experience):
            return Tuples(experience.dataset)

    record = Record()
    make(TupleSource, plugins=[record]).train(tiny_benchmark().train_stream[0])
    assert len(record.batches) == 1 and isinstance(record.batches[0], MiniBatch)
