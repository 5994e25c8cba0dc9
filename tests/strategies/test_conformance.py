"""One conformance suite every rehearsal method passes (the policies': tests/replay/test_memory_properties.py).

Every method of the registry (and online ER) is trained over small streams drawn by
hypothesis: memory sizes, batch sizes, epochs, seeds. Every sample carries a unique
id in its first feature, so what a batch replays and what the memory holds can be
traced back. The promises:

* storage: the memory never holds more than ``mem_size`` samples, each one a sample
  seen before (same features, label, task label), each once (or once per epoch, for the
  methods that offer the stream at every epoch, as mammoth's reservoir does); the
  groups' labels are the stored ones;
* provenance: a batch's ``"stream"`` rows come from the current experience, each memory
  segment's rows are what its store holds at the rows it names, and ``from_memory``
  marks exactly the memory segments;
* seeds: the same seed trains the same weights and stores the same memory;
* resume: a strategy loaded from the state after an experience ends like one that
  never stopped, bit for bit.
"""

from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clreplay.benchmarks import Experience
from clreplay.data import ClassificationDataset
from clreplay.models import make_mlp
from clreplay.run_config import RunConfig
from clreplay.strategies import METHODS, get_method
from clreplay.training import Naive, StrategyPlugin

N_FEATURES, N_CLASSES, N_EXPERIENCES = 3, 6, 3
SETTINGS = settings(max_examples=8, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
#: Every method, and ER updated online.
CASES = list(METHODS) + ["online-er"]


def stream():
    """3 experiences of 2 classes; sample ids 100 * experience + j in feature 0."""
    experiences = []
    for e in range(N_EXPERIENCES):
        n = 24
        ids = torch.arange(n, dtype=torch.float32) + 100 * e
        y = torch.tensor([2 * e, 2 * e + 1] * (n // 2))
        x = torch.stack([ids, y.float(), torch.sin(ids * 3.7)], dim=1)
        experiences.append(Experience(ClassificationDataset(x, y, task_labels=e), e, [2 * e, 2 * e + 1]))
    return experiences


def config_for(case, mem_size, batch_size, batch_size_mem, epochs):
    config = RunConfig(mem_size=mem_size, batch_size=batch_size, epochs=epochs, hidden=[8], seed=0)
    if case == "online-er":
        return replace(config, online=True, batch_size_mem=batch_size_mem).validate()
    method = get_method(case)
    options = {"sample_size": 4} if case == "agem" else {"passes": max(epochs, 1)} if case == "gdumb" else {}
    mem = batch_size_mem if "batch_size_mem" in method.replay_options else None
    return replace(config, method=case, method_options=options, batch_size_mem=mem).validate()


class Trace(StrategyPlugin):
    """Checks every batch's provenance while it trains (the memory changes after it)."""

    def __init__(self, plugin):
        self.plugin, self.batches = plugin, 0

    def before_forward(self, strategy, **kwargs):
        mb, current = strategy.mb, strategy.experience.current_experience
        mask = torch.zeros(len(mb), dtype=torch.bool)
        stream_ids = mb.x[mb.stream.slice, 0]
        if self.plugin is not None and self.plugin.__class__.__name__ == "GDumbPlugin":
            assert not mb.memory_segments  # GDumb trains on its memory alone, as its "stream"
        else:
            assert bool(((stream_ids >= 100 * current) & (stream_ids < 100 * current + 100)).all())
        store = getattr(getattr(self.plugin, "storage_policy", None), "store", None)
        for segment in mb.memory_segments:
            mask[segment.slice] = True
            assert torch.equal(mb.x[segment.slice], store.read_x(segment.rows))
            assert torch.equal(mb.y[segment.slice], store.read("y", segment.rows))
            assert torch.equal(mb.t[segment.slice], store.read("t", segment.rows))
        assert torch.equal(mb.from_memory, mask)
        self.batches += 1


def build(config, seed):
    model = make_mlp(N_FEATURES, N_CLASSES, [8], seed=seed)
    plugins = get_method(config.method).build(config, model)
    trace = Trace(plugins[0])
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.05), train_mb_size=config.batch_size,
                     train_epochs=config.epochs, plugins=[*plugins, trace], seed=seed)
    return strategy, plugins[0], trace


def check_memory(plugin, seen, epochs):
    """Storage invariants of the plugin's memory after an update."""
    policy = plugin.storage_policy
    samples = [(group.get_batch(torch.arange(len(group))), group) for group in policy.ext_mem.values()]
    total = sum(len(group) for _, group in samples)
    assert total <= plugin.mem_size
    ids = []
    for (x, y, t), group in samples:
        assert torch.equal(group.targets, y) and torch.equal(group.task_labels, t)  # labels as stored
        for row in range(len(group)):
            sid = int(x[row, 0])
            ids.append(sid)
            assert sid in seen, f"stored sample {sid} was never seen"
            assert torch.equal(x[row], seen[sid][0]) and int(y[row]) == seen[sid][1]
            assert int(t[row]) == seen[sid][2]
    offers = epochs if getattr(plugin, "store_every_epoch", False) else 1
    assert max([ids.count(i) for i in ids], default=0) <= offers, "a sample is stored more than offered"


def train(case, mem_size, batch_size, batch_size_mem, epochs, seed, *, stop_after=None):
    config = config_for(case, mem_size, batch_size, batch_size_mem, epochs)
    strategy, plugin, trace = build(config, seed)
    experiences, seen = stream(), {}
    for e, experience in enumerate(experiences):
        data = experience.dataset
        for row in range(len(data)):
            x, y, t = data[row]
            seen[int(x[0])] = (x, int(y), int(t))
        strategy.train(experience)
        check_memory(plugin, seen, epochs)
        if stop_after is not None and e == stop_after:  # a new process takes over from the state
            state = strategy.state_dict()
            strategy, plugin, trace = build(config, seed)
            strategy.load_state_dict(state)
    assert trace.batches > 0
    return strategy, plugin


def weights(strategy):
    return torch.cat([p.detach().flatten() for p in strategy.model.parameters()])


def memory(plugin):
    return [(key, group.get_batch(torch.arange(len(group)))[0]) for key, group in plugin.ext_mem.items()]


@pytest.mark.parametrize("case", CASES)
@SETTINGS
@given(mem_size=st.integers(1, 40), batch_size=st.integers(1, 9), batch_size_mem=st.integers(1, 6),
       epochs=st.integers(1, 2), seed=st.integers(0, 3), stop_after=st.integers(0, N_EXPERIENCES - 2))
def test_every_method_keeps_the_storage_provenance_seed_and_resume_promises(
        case, mem_size, batch_size, batch_size_mem, epochs, seed, stop_after):
    args = (case, mem_size, batch_size, batch_size_mem, epochs, seed)
    first, first_plugin = train(*args)
    again, again_plugin = train(*args)
    assert torch.equal(weights(first), weights(again)), "the same seed must train the same weights"
    assert all(a[0] == b[0] and torch.equal(a[1], b[1]) for a, b in zip(memory(first_plugin), memory(again_plugin)))
    resumed, _ = train(*args, stop_after=stop_after)
    assert torch.equal(weights(first), weights(resumed)), "a resumed run must end like an uninterrupted one"
