"""GDumb: the greedy class-balanced sampler, seeded re-initialisation, training on memory only."""

from types import SimpleNamespace

import pytest
import torch
from conftest import make_dataset, samples_of
from torch import nn

from clreplay.benchmarks import Experience
from clreplay.strategies import GDumbPlugin, GreedyClassBalancedStoragePolicy, reinitialise
from clreplay.training import Naive


def _feed(policy, labels, index, start=0):
    data = make_dataset(labels, start=start)
    policy(SimpleNamespace(experience=Experience(data, index, sorted(set(labels)))))


def test_greedy_sampler_by_hand():
    policy = GreedyClassBalancedStoragePolicy({}, mem_size=4, seed=0)
    _feed(policy, [0, 0, 0], 0)  # room: all stored
    assert {c: samples_of(g)[:, 0].tolist() for c, g in policy.ext_mem.items()} == {0: [0.0, 1.0, 2.0]}
    # id 3 (class 1) fills the last row; id 4 (class 1: 1 < 4/2) replaces a class-0 sample;
    # id 5 (class 1: 2 < 2 is false) is dropped; id 6 (class 2: 0 < 4/3) replaces one of the
    # largest class (0 and 1 hold 2 each: the lowest label, 0).
    _feed(policy, [1, 1, 1, 2], 1, start=3)
    sizes = {c: len(g) for c, g in policy.ext_mem.items()}
    assert sizes == {0: 1, 1: 2, 2: 1}
    assert samples_of(policy.ext_mem[1])[:, 0].tolist() == [3.0, 4.0]  # arrival order
    assert samples_of(policy.ext_mem[2])[:, 0].tolist() == [6.0]
    assert samples_of(policy.ext_mem[0])[0, 0].item() in (0.0, 1.0, 2.0)


def test_greedy_sampler_is_seeded():
    memories = []
    for seed in (0, 0, 1):
        policy = GreedyClassBalancedStoragePolicy({}, mem_size=6, seed=seed)
        _feed(policy, [0] * 20, 0)
        _feed(policy, [1] * 20, 1, start=20)
        memories.append(samples_of(policy.ext_mem[0])[:, 0].tolist())
    assert memories[0] == memories[1] != memories[2]


def test_reinitialise_is_seeded_and_leaves_the_global_generator_alone():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    before = torch.random.get_rng_state()
    reinitialise(model, 3)
    first = [p.clone() for p in model.parameters()]
    reinitialise(model, 4)
    reinitialise(model, 3)
    assert all(torch.equal(a, b) for a, b in zip(first, model.parameters()))
    assert torch.equal(torch.random.get_rng_state(), before)

    class NoReset(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(2))

    with pytest.raises(TypeError, match=r"module '<root>' \(NoReset\) holds parameters but has no reset_parameters"):
        reinitialise(NoReset(), 0)


def test_gdumb_trains_from_scratch_on_the_memory_only():
    model = nn.Linear(2, 3)
    gdumb = GDumbPlugin(mem_size=4, passes=3, seed=0)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                     train_mb_size=2, train_epochs=2, plugins=[gdumb], seed=0)
    trained_on, at_first_step = [], []
    original = strategy.training_step

    def spy(**kwargs):
        trained_on.append(strategy.mb.x[:, 0].tolist())
        at_first_step.append((model.weight.clone(), len(strategy.optimizer.state)))
        original(**kwargs)

    strategy.training_step = spy
    strategy.train(Experience(make_dataset([0, 1] * 10), 0, [0, 1]))
    memory_ids = set(samples_of(gdumb.ext_mem[0])[:, 0].tolist() + samples_of(gdumb.ext_mem[1])[:, 0].tolist())
    assert len(trained_on) == 3 * 2  # 3 passes over 4 samples, batches of 2, over 2 epochs
    assert {i for batch in trained_on for i in batch} == memory_ids
    # The next experience starts from freshly drawn weights, with no momentum left.
    trained, steps = model.weight.clone(), len(at_first_step)
    assert len(strategy.optimizer.state) == 2  # momentum buffers
    strategy.train(Experience(make_dataset([2, 2], start=20), 1, [2]))
    weights, n_states = at_first_step[steps]
    assert not torch.equal(weights, trained) and n_states == 0


def test_passes_must_cover_the_epochs():
    model = nn.Linear(2, 2)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_epochs=3,
                     plugins=[GDumbPlugin(4, passes=2)], seed=0)
    with pytest.raises(ValueError, match=r"passes \(2\) must be at least the strategy's train_epochs \(3\)"):
        strategy.train(Experience(make_dataset([0, 1]), 0, [0, 1]))
