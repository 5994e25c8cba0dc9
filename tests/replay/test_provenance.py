"""Provenance survives composition: every row of a batch two replay plugins built is in the
segment of the source that put it there."""

import pytest
import torch
from conftest import make_dataset

from clreplay import OnlineReplayPlugin, ReplayPlugin, StrategyPlugin
from clreplay.benchmarks import Experience
from clreplay.strategies import DERPlugin
from clreplay.training import Naive


class Batches(StrategyPlugin):
    """Keeps every batch; checks, while it trains, that each memory segment's rows are
    the ones stored in its plugin's store at the rows it names."""

    def __init__(self, stores=None):
        self.seen, self.stores = [], stores or {}

    def before_forward(self, strategy, **kwargs):
        mb = strategy.mb
        self.seen.append(mb)
        for segment in mb.memory_segments:
            store = self.stores.get(segment.name)
            if store is not None:
                assert torch.equal(mb.x[segment.slice], store.read_x(segment.rows))
                assert torch.equal(mb.y[segment.slice], store.read("y", segment.rows))


def run(plugins, experiences=3, per=40, stores=None):
    model = torch.nn.Linear(2, 2 * experiences)
    record = Batches(stores)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.05), train_mb_size=10,
                     plugins=[*plugins, record], seed=0)
    for i in range(experiences):
        data = make_dataset([2 * i, 2 * i + 1] * (per // 2), start=1000 * i)  # ids: 1000 * experience + j
        strategy.train(Experience(data, i, [2 * i, 2 * i + 1]))
        record.experience = i
    return record.seen


@pytest.mark.parametrize("online_first", [False, True])
def test_both_replay_plugins_mark_every_replayed_row(online_first):
    offline = ReplayPlugin(30, batch_size_mem=8)
    online = OnlineReplayPlugin(30, batch_size_mem=4)
    plugins = [online, offline] if online_first else [offline, online]
    batches = run(plugins, stores={"online_replay": online.storage_policy.store,
                                   "replay": offline.storage_policy.store})
    last = batches[-1]
    names = [s.name for s in last.segments]
    assert names == (["stream", "online_replay", "replay"] if online_first else ["stream", "replay", "online_replay"])
    assert [len(s) for s in last.segments if s.from_memory] == ([4, 8] if online_first else [8, 4])
    assert last.n_memory == 12 and int(last.from_memory.sum()) == 12
    for mb in batches:
        stream = mb.stream
        assert not mb.from_memory[stream.slice].any()
        for segment in mb.memory_segments:
            assert mb.from_memory[segment.slice].all()
    # The online memory was offered the stream rows only, never the offline plugin's replayed rows.
    assert online.storage_policy.n_seen == 3 * 40
    stored_ids = online.ext_mem[0].storage[online.ext_mem[0].indices][:, 0]
    assert len(set(stored_ids.tolist())) == len(stored_ids)


def test_two_sources_with_one_segment_name_are_refused_naming_both():
    class SecondDER(DERPlugin):  # a second method drawing into "replay" as ReplayPlugin does
        pass

    with pytest.raises(ValueError, match="segment named 'replay' cannot extend a ReplayBatchSource whose "
                                         r"batches already hold one \(segments \['stream', 'replay'\]\)"):
        run([ReplayPlugin(30, batch_size_mem=8), SecondDER(30)])


def test_a_draw_segment_knows_its_store_rows_and_reads_its_columns_there():
    der = DERPlugin(mem_size=20, alpha=0.5, beta=1.0, batch_size_mem=3)
    batches = run([der], experiences=2)
    store = der.storage_policy.store
    mb = batches[-1]
    for name in ("replay", "replay_ce"):
        segment = mb.segment(name)
        assert len(segment) == 3 and segment.from_memory
        assert torch.equal(segment.columns["logits"], store.read("logits", segment.rows))
    with pytest.raises(KeyError, match=r"the mini-batch has no segment 'replay_x'; it has \['stream', 'replay', "
                                       r"'replay_ce'\]"):
        mb.segment("replay_x")
