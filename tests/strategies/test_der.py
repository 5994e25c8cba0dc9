"""DER / DER++: the logit-matching term by hand, stored logits, a head that grows, the protocol."""

import math
from types import SimpleNamespace

import pytest
import torch
from conftest import make_dataset
from torch import nn

from clreplay.benchmarks import Experience
from clreplay.data import MiniBatch
from clreplay.strategies import DERPlugin, logit_mse
from clreplay.training import Naive, StrategyPlugin

NAN = float("nan")


def _batch(stream_labels, replay_labels, logits):
    """A batch of stream rows then a "replay" draw whose stored logits are ``logits``."""
    zeros = torch.zeros(len(stream_labels), dtype=torch.long)
    mb = MiniBatch(torch.zeros(len(stream_labels), 1), torch.tensor(stream_labels), zeros)
    return mb.append(torch.zeros(len(replay_labels), 1), torch.tensor(replay_labels),
                     torch.zeros(len(replay_labels), dtype=torch.long), name="replay",
                     rows=torch.arange(len(replay_labels)), columns={"logits": torch.tensor(logits)})


def test_mse_on_two_replayed_rows_by_hand():
    mb = _batch([], [0, 1], [[1.0, 2.0], [0.0, -1.0]])
    out = torch.tensor([[2.0, 2.0], [0.0, 1.0]])
    # squared differences 1, 0, 0, 4: their mean is 5 / 4
    assert logit_mse(out, mb, "replay").item() == 1.25
    # NaN marks a logit never stored: not compared, and not counted in the mean.
    mb = _batch([], [0, 1], [[1.0, NAN], [0.0, -1.0]])
    assert logit_mse(out, mb, "replay").item() == pytest.approx(5 / 3)


def test_criterion_is_ce_on_the_stream_plus_alpha_mse_on_the_replayed_rows():
    der = DERPlugin(mem_size=10, alpha=0.5)
    out = torch.tensor([[0.0, 0.0], [2.0, 2.0], [0.0, 1.0]])  # one stream row, two replayed
    mb = _batch([0], [1, 0], [[1.0, 2.0], [0.0, -1.0]])
    strategy = SimpleNamespace(mb=mb, mb_output=out, loss_fn=nn.CrossEntropyLoss(), train_mb_size=1)
    # CE of logits (0, 0) for class 0 is log 2; the replayed rows' labels do not count.
    expected = math.log(2.0) + 0.5 * 1.25
    assert der.criterion(strategy).item() == pytest.approx(expected, abs=1e-7)
    # Any other loss function is called on the stream rows alone.
    strategy.loss_fn = lambda o, y: nn.functional.cross_entropy(o, y, reduction="sum")
    assert der.criterion(strategy).item() == pytest.approx(expected, abs=1e-7)


def test_stored_logits_are_those_of_the_step_that_trained_on_the_sample():
    data = make_dataset([0, 1] * 6, features=3)
    model = nn.Linear(3, 2)
    der = DERPlugin(mem_size=100, alpha=0.2, batch_size_mem=2, store_every_epoch=False)
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            out = model(x)
            if x.shape[0] >= 2:
                seen.append((x[:2].clone(), out[:2].detach().clone()))  # the stream rows
            return out

    strategy = Naive(Spy(), torch.optim.SGD(model.parameters(), lr=0.5), train_mb_size=2,
                     plugins=[der], seed=0)
    strategy.train(Experience(data, 0, [0, 1]))
    store = der.storage_policy.store
    rows = der.ext_mem[0].indices
    logits, xs = store.read("logits", rows), store.read("x", rows)
    assert len(rows) == 12 and not logits.isnan().any()
    for x, stored in zip(xs, logits):
        matches = [out[i] for batch_x, out in seen for i in range(2) if torch.equal(batch_x[i], x)]
        assert torch.equal(stored, matches[0])  # forward of the step the sample arrived in


@pytest.mark.parametrize("every_epoch, offered", [(True, 3 * 40), (False, 40)])
def test_the_stream_is_offered_at_every_epoch_or_once(every_epoch, offered):
    model = nn.Linear(2, 2)
    der = DERPlugin(mem_size=10, store_every_epoch=every_epoch)
    Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=8, train_epochs=3,
          plugins=[der], seed=0).train(Experience(make_dataset([0, 1] * 20), 0, [0, 1]))
    assert der.storage_policy.n_seen == offered


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
    model = GrowingHead()
    der = DERPlugin(mem_size=8, alpha=1.0, batch_size_mem=4, memmap_dir=memmap_dir, store_every_epoch=False)
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
    logits = store.read("logits", rows)
    old = logits[:, 2].isnan()
    assert 0 < int(old.sum()) < 8  # rows stored before and after the head grew
    assert logits[old][:, 2:].isnan().all() and not logits[old][:, :2].isnan().any()
    assert not logits[~old].isnan().any()
    # By hand: an old row compares 2 columns, a new row 4.
    current = torch.tensor([[1.0, 1.0, 5.0, 5.0], [1.0, 1.0, 1.0, 1.0]])
    mb = _batch([], [0, 1], [[0.0, 1.0, NAN, NAN], [0.0, 0.0, 0.0, 3.0]])
    assert logit_mse(current, mb, "replay").item() == pytest.approx((1 + 0 + 1 + 1 + 1 + 4) / 6, abs=1e-7)
    # The same memory in memory-mapped files.
    mapped, _ = _growing_run(memmap_dir=tmp_path)
    for name in ("x", "y", "logits"):
        assert torch.equal(mapped.storage_policy.store.read(name, rows).nan_to_num(-7.0),
                           store.read(name, rows).nan_to_num(-7.0))


class Capture(StrategyPlugin):
    """Keeps the batch, the loss and the model's output on the batch of every step."""

    def __init__(self):
        self.steps = []

    def after_backward(self, strategy, **kwargs):
        self.steps.append((strategy.mb, strategy.loss.detach(), strategy.mb_output.detach()))


@pytest.mark.parametrize("batch_norm", [False, True])
def test_derpp_adds_beta_ce_on_a_second_independent_memory_draw(batch_norm):
    layers = [nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)] if batch_norm else [nn.Linear(2, 2)]
    model = nn.Sequential(*layers)
    der, capture = DERPlugin(mem_size=6, alpha=0.5, beta=2.0, batch_size_mem=2, seed=1), Capture()
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.0), train_mb_size=3,
                     plugins=[der, capture], seed=0)
    strategy.train(Experience(make_dataset([0, 1, 0, 1, 0, 1, 0, 1, 0]), 0, [0, 1]))
    mb, loss, out = capture.steps[-1]
    # 3 stream rows, the "replay" draw (2 rows with stored logits), the "replay_ce" draw (2 rows),
    # forwarded together.
    assert [(s.name, len(s), s.from_memory) for s in mb.segments] == [
        ("stream", 3, False), ("replay", 2, True), ("replay_ce", 2, True)]
    stored = mb.segment("replay").columns["logits"]
    ce = nn.functional.cross_entropy
    expected = ce(out[:3], mb.y[:3]) + 0.5 * ((out[3:5] - stored) ** 2).mean() + 2.0 * ce(out[5:], mb.y[5:])
    assert torch.isclose(loss, expected, atol=1e-6)
    assert len(set(mb.segment("replay_ce").rows.tolist())) == 2  # the second draw: distinct rows


def test_bad_weights_name_the_argument():
    with pytest.raises(ValueError, match=r"alpha must be a number >= 0.0, got -0.1"):
        DERPlugin(10, alpha=-0.1)
    with pytest.raises(TypeError, match=r"beta must be a number >= 0.0, got '1' \(str\)"):
        DERPlugin(10, beta="1")
    with pytest.raises(TypeError, match=r"store_every_epoch must be a bool, got 1"):
        DERPlugin(10, store_every_epoch=1)
