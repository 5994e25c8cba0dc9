"""Golden values: speed work must not change what is stored, replayed or learned.

The expected fingerprints were first recorded, with one torch thread, from the code
as it stood before the performance work of issue 4 (commit b355f7d), and the
optimised code reproduced them bit for bit. They were recorded once more when the
method contract gave every random stream its own name (the shuffles, the class
order and the initialisation had shared the raw seed): with the old streams put
back, the new code reproduced the old values bit for bit, so only the seeds moved
them. Every sample's first feature
encodes a unique id, so each replayed mini-batch is read back as a list of ids;
the test hashes the exact id sequence of every run, the ids kept in memory and
the final weights.

Ids and memory contents are integers, so their fingerprints are exact on every
machine. The final weights are checked two ways: bit for bit against a bare
PyTorch loop fed with the very batches the strategy replayed (exact everywhere:
same operations in the same order), and against the recorded weight sums with a
relative tolerance of 1e-6, since float results of BLAS kernels differ in the
last bits between CPU instruction sets and between thread counts (the tests pin
one thread, as the recording did).
"""

import hashlib

import pytest
import torch

from clreplay import (
    ClassBalancedStoragePolicy,
    ExperienceBalancedStoragePolicy,
    HerdingSelectionStrategy,
    ReplayPlugin,
    StrategyPlugin,
)
from clreplay.benchmarks import class_incremental
from clreplay.data import ClassificationDataset
from clreplay.models import make_mlp
from clreplay.replay.selection import feature_based as selection
from clreplay.training import Naive

N_SAMPLES, N_FEATURES, N_CLASSES = 360, 6, 6
ID_SCALE = 1e-3  # ids < 1000 survive the float32 round trip exactly


@pytest.fixture(autouse=True)
def one_thread():
    """Float results depend on the thread count: pin it to the recording's."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def id_dataset(n, offset, seed):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % N_CLASSES
    centres = torch.randn(N_CLASSES, N_FEATURES, generator=gen) * 2.0
    x = centres[y] + torch.randn(n, N_FEATURES, generator=gen)
    x[:, 0] = (torch.arange(n) + offset).float() * ID_SCALE
    return ClassificationDataset(x, y)


def ids_of(x):
    return torch.round(x[:, 0] / ID_SCALE).long()


def digest(values):
    data = torch.as_tensor(values, dtype=torch.long).cpu().contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


class Recorder(StrategyPlugin):
    """Keeps every training mini-batch exactly as the model saw it."""

    def __init__(self):
        self.batches = []

    def before_forward(self, strategy, **kwargs):
        self.batches.append((strategy.mb_x.clone(), strategy.mb_y.clone()))


def make_policy(kind, model):
    if kind == "experience":
        return ExperienceBalancedStoragePolicy({}, 60)
    if kind == "class_random":
        return ClassBalancedStoragePolicy({}, 60)
    if kind == "class_herding":
        return ClassBalancedStoragePolicy({}, 60, selection_strategy=HerdingSelectionStrategy(model, "1"))
    raise AssertionError(kind)


def run(kind, batch_size_mem=None):
    bench = class_incremental(id_dataset(N_SAMPLES, 0, 1), id_dataset(60, 500, 2), 3, seed=0)
    model = make_mlp(N_FEATURES, N_CLASSES, [16], seed=0)
    replay = ReplayPlugin(60, make_policy(kind, model), batch_size_mem=batch_size_mem)
    recorder = Recorder()
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                     train_mb_size=13, train_epochs=2, plugins=[replay, recorder], seed=7)
    for experience in bench.train_stream:
        strategy.train(experience)
    memory = {key: ids_of(group.get_batch(range(len(group)))[0]).tolist()
              for key, group in sorted(replay.ext_mem.items())}
    return strategy, recorder.batches, memory


def bare_loop(batches):
    """The same training, hand-written: zero_grad, forward, loss, backward, step."""
    model = make_mlp(N_FEATURES, N_CLASSES, [16], seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
    return model


# kind, batch_size_mem -> (batches, samples replayed, id-sequence digest, label-sequence digest,
#                          memory digest, sum of |weights|, sum of squared weights)
GOLDEN = {
    ("experience", None): (104, 1310, "ca4c516517f64f17", "f2d25f1d41ba4102", "a6ff2af8143e86b6",
                           110.41081212882273, 113.07608405046618),
    ("class_random", None): (104, 1310, "ee91fb0d742389fa", "4c4f8ad3eecfa837", "8b8f565663c9e9b2",
                             111.9476388997864, 111.43193277617743),
    ("class_herding", None): (104, 1310, "bada75864a9771c8", "4c4f8ad3eecfa837", "537523fbfd483386",
                              105.33732170314761, 105.8626527859718),
    ("experience", 5): (60, 920, "970416915253797c", "15e1c9fbea88f82b", "a6ff2af8143e86b6",
                        108.89605732262135, 111.81561382744414),
}


def fingerprint(strategy, batches, memory):
    ids = torch.cat([ids_of(x) for x, _ in batches])
    labels = torch.cat([y for _, y in batches])
    mem_flat = [v for key in sorted(memory) for v in [-1 - int(key)] + memory[key]]
    weights = torch.cat([p.detach().flatten().double() for p in strategy.model.parameters()])
    # Sums of |w| and w^2: no cancellation, so a relative tolerance means something.
    return (len(batches), len(ids), digest(ids), digest(labels), digest(mem_flat),
            float(weights.abs().sum()), float((weights * weights).sum()))


CASES = [("experience", None), ("class_random", None), ("class_herding", None), ("experience", 5)]


@pytest.mark.parametrize("kind, batch_size_mem", CASES)
def test_replayed_batches_memory_and_weights_match_the_golden_run(kind, batch_size_mem):
    strategy, batches, memory = run(kind, batch_size_mem)
    got = fingerprint(strategy, batches, memory)
    expected = GOLDEN[(kind, batch_size_mem)]
    assert got[:5] == expected[:5]
    assert got[5:] == pytest.approx(expected[5:], rel=1e-6)


@pytest.mark.parametrize("kind, batch_size_mem", [("experience", None), ("class_herding", None)])
def test_strategy_weights_equal_a_bare_loop_on_the_same_batches_bit_for_bit(kind, batch_size_mem):
    strategy, batches, _ = run(kind, batch_size_mem)
    reference = bare_loop(batches)
    for mine, theirs in zip(strategy.model.parameters(), reference.parameters()):
        assert torch.equal(mine.detach(), theirs.detach())


@pytest.mark.parametrize("gram_max", [8192, 100])  # with the Gram matrix, and streaming
@pytest.mark.parametrize("features, expected", [
    (torch.randn(600, 32, generator=torch.Generator().manual_seed(3)), "e0ed9ec67b2343e2"),
    # small integer features: many exact ties, which go to the lowest index
    (torch.randint(0, 3, (400, 4), generator=torch.Generator().manual_seed(4)).float(),
     "eff42d1cfcd1b298"),
])
def test_herding_order_matches_the_golden_order(monkeypatch, gram_max, features, expected):
    monkeypatch.setattr(selection, "_GRAM_MAX_SAMPLES", gram_max)
    assert digest(selection.herding_order(features)) == expected
