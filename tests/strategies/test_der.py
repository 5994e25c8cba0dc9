"""DER / DER++: the logit-matching term by hand, stored logits, a head that grows."""

from types import SimpleNamespace

import pytest
import torch
from conftest import make_dataset
from torch import nn

from clreplay.data import MiniBatch
from clreplay.strategies import DERPlugin, logit_matching_loss
from clreplay.training import Naive, StrategyPlugin


def test_mse_on_two_replayed_rows_by_hand():
    current = torch.tensor([[2.0, 2.0], [0.0, 1.0]])
    stored = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    # squared differences 1, 0, 0, 4: their mean is 5 / 4
    assert logit_matching_loss(current, stored, torch.tensor([2, 2])).item() == 1.25


def test_criterion_is_ce_on_the_stream_plus_alpha_mse_on_the_replayed_rows():
    der = DERPlugin(mem_size=10, alpha=0.5)
    out = torch.tensor([[0.0, 0.0], [2.0, 2.0], [0.0, 1.0]])  # one stream row, two replayed
    mb = MiniBatch(torch.zeros(3, 1), torch.tensor([0, 1, 0]), torch.zeros(3, dtype=torch.long),
                   from_memory=torch.tensor([False, True, True]), memory_rows=torch.tensor([4, 7]),
                   extras={"logits": torch.tensor([[1.0, 2.0], [0.0, -1.0]]),
                           "logits_width": torch.tensor([2, 2])})
    strategy = SimpleNamespace(mb=mb, mb_output=out, loss_fn=nn.CrossEntropyLoss(), train_mb_size=1)
    # CE of logits (0, 0) for class 0 is log 2; the replayed rows' labels do not count.
    expected = torch.log(torch.tensor(2.0)) + 0.5 * 1.25
    assert torch.isclose(der.criterion(strategy), expected, rtol=0, atol=1e-7)


def test_stored_logits_are_those_of_the_step_that_trained_on_the_sample():
    data = make_dataset([0, 1] * 6, features=3)
    model = nn.Linear(3, 2)
    der = DERPlugin(mem_size=100, alpha=0.2, batch_size_mem=2)
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            out = model(x)
            if x.shape[0] >= 2:
                seen.append((x[:2].clone(), out[:2].detach().clone()))  # the stream rows
            return out

    strategy = Naive(Spy(), torch.optim.SGD(model.parameters(), lr=0.5), train_mb_size=2,
                     plugins=[der], seed=0)
    from clreplay.benchmarks import Experience
    strategy.train(Experience(data, 0, [0, 1]))
    store = der.storage_policy.store
    rows = der.ext_mem[0].indices
    logits, widths = store.read("logits", rows), store.read("logits_width", rows)
    xs = store.read("x", rows)
    for x, stored in zip(xs, logits):
        matches = [out[i] for batch_x, out in seen for i in range(2) if torch.equal(batch_x[i], x)]
        assert torch.equal(stored, matches[0])  # forward of the step the sample arrived in
    assert widths.tolist() == [2] * 12


class GrowingHead(nn.Module):
    """A linear head of 4 outputs of which only the first ``active`` are used (a head
    that grows when new classes arrive)."""

    def __init__(self):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.linear = nn.Linear(2, 4)
        self.active = 2

    def forward(self, x):
        return self.linear(x)[:, : self.active]


def _growing_run(memmap_dir=None):
    from clreplay.benchmarks import Experience

    model = GrowingHead()
    der = DERPlugin(mem_size=8, alpha=1.0, batch_size_mem=4, memmap_dir=memmap_dir)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=4,
                     plugins=[der], seed=0)
    strategy.train(Experience(make_dataset([0, 1] * 4), 0, [0, 1]))
    model.active = 4
    strategy.train(Experience(make_dataset([2, 3] * 4, start=8), 1, [2, 3]))
    return der, strategy


def test_a_head_that_grows_compares_the_stored_columns_only(tmp_path):
    der, strategy = _growing_run()
    store = der.storage_policy.store
    assert store.extras["logits"].shape == (4,)  # the column widened with the head
    rows = der.ext_mem[0].indices
    widths = store.read("logits_width", rows)
    logits = store.read("logits", rows)
    old = widths == 2
    assert 0 < int(old.sum()) < 8  # rows stored before and after the head grew
    assert torch.equal(logits[old][:, 2:], torch.zeros(int(old.sum()), 2))  # padded, never compared
    # By hand: an old row compares 2 columns, a new row 4.
    current = torch.tensor([[1.0, 1.0, 5.0, 5.0], [1.0, 1.0, 1.0, 1.0]])
    stored = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0]])
    loss = logit_matching_loss(current, stored, torch.tensor([2, 4]))
    assert loss.item() == pytest.approx((1 + 0 + 1 + 1 + 1 + 4) / 6, abs=1e-7)
    # The same memory in memory-mapped files.
    mapped, _ = _growing_run(memmap_dir=tmp_path)
    for name in ("x", "y", "logits", "logits_width"):
        assert torch.equal(mapped.storage_policy.store.read(name, rows), store.read(name, rows))


class Capture(StrategyPlugin):
    """Keeps the batch, the loss and the model's output on the batch of every step."""

    def __init__(self):
        self.steps = []

    def after_backward(self, strategy, **kwargs):
        self.steps.append((strategy.mb, strategy.loss.detach(), strategy.mb_output.detach()))


def test_derpp_adds_beta_ce_on_a_second_independent_memory_batch():
    from clreplay.benchmarks import Experience

    model = nn.Linear(2, 2)
    der, capture = DERPlugin(mem_size=6, alpha=0.5, beta=2.0, batch_size_mem=2, seed=1), Capture()
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.0), train_mb_size=3,
                     plugins=[der, capture], seed=0)
    strategy.train(Experience(make_dataset([0, 1, 0, 1, 0, 1, 0, 1, 0]), 0, [0, 1]))
    mb, loss, out = capture.steps[-1]
    # 3 stream rows, 2 replayed rows with stored logits, then 2 rows of the second batch:
    # one forward gives the outputs of both memory batches (a linear model's rows are independent).
    assert len(mb) == 7 and mb.from_memory.tolist() == [False] * 3 + [True] * 4
    stored = mb.extras["logits"][:2]
    ce = nn.functional.cross_entropy
    expected = ce(out[:3], mb.y[:3]) + 0.5 * ((out[3:5] - stored) ** 2).mean() + 2.0 * ce(out[5:], mb.y[5:])
    assert torch.isclose(loss, expected, atol=1e-6)
    assert torch.equal(out, model(mb.x).detach())
    assert len(set(mb.memory_rows[2:].tolist())) == 2  # the second batch: distinct memory rows


def test_derpp_with_batch_norm_forwards_the_second_batch_on_its_own():
    from clreplay.benchmarks import Experience

    model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    der, capture = DERPlugin(mem_size=6, alpha=0.5, beta=2.0, batch_size_mem=2, seed=1), Capture()
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.0), train_mb_size=3,
                     plugins=[der, capture], seed=0)
    strategy.train(Experience(make_dataset([0, 1, 0, 1, 0, 1, 0, 1, 0]), 0, [0, 1]))
    mb, loss, out = capture.steps[-1]
    assert len(mb) == 5  # the stream and the first memory batch only
    ce = nn.functional.cross_entropy
    first = ce(out[:3], mb.y[:3]) + 0.5 * ((out[3:] - mb.extras["logits"]) ** 2).mean()
    assert loss > first  # plus beta * CE on the second batch, forwarded apart


def test_bad_weights_name_the_argument():
    with pytest.raises(ValueError, match=r"alpha must be a number >= 0.0, got -0.1"):
        DERPlugin(10, alpha=-0.1)
    with pytest.raises(TypeError, match=r"beta must be a number >= 0.0, got '1' \(str\)"):
        DERPlugin(10, beta="1")
