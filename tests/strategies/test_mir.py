"""MIR: interference scores by hand and against a real SGD step; the replayed rows are the top-k."""

import copy
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clreplay.benchmarks import Experience
from clreplay.data import ClassificationDataset, MiniBatch
from clreplay.strategies.mir import MIRPlugin, interference_scores
from clreplay.training import Naive, StrategyPlugin


def test_scores_by_hand():
    model = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0], [0.0]]))
    scores = interference_scores(model, F.cross_entropy, torch.ones(1, 1), torch.tensor([1]),
                                 torch.tensor([[1.0], [-1.0]]), torch.tensor([0, 0]), lr=1.0)
    # Gradient of the stream's CE: (p - e_1) x with p = softmax(1, 0); W_v = W - that.
    p = math.exp(1) / (math.exp(1) + 1)
    w_v = [1 - p, p]  # the two logits' weights after the virtual step
    ce = lambda logit0, logit1: math.log(1 + math.exp(logit1 - logit0))  # noqa: E731  (label 0)
    expected = [ce(w_v[0], w_v[1]) - ce(1.0, 0.0), ce(-w_v[0], -w_v[1]) - ce(-1.0, 0.0)]
    assert scores.tolist() == pytest.approx(expected, abs=1e-6)
    assert model.weight.tolist() == [[1.0], [0.0]]  # the model itself is untouched


def test_scores_equal_those_of_a_real_sgd_step_on_a_copy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4))
    xs, ys = torch.randn(6, 3), torch.tensor([0, 1, 2, 3, 0, 1])
    xc, yc = torch.randn(8, 3), torch.randint(0, 4, (8,))
    stepped = copy.deepcopy(model)
    optimizer = torch.optim.SGD(stepped.parameters(), lr=0.3)
    F.cross_entropy(stepped(xs), ys).backward()
    optimizer.step()
    with torch.no_grad():
        reference = F.cross_entropy(stepped(xc), yc, reduction="none") - F.cross_entropy(model(xc), yc,
                                                                                          reduction="none")
    assert torch.allclose(interference_scores(model, F.cross_entropy, xs, ys, xc, yc, 0.3), reference, atol=1e-6)


def test_the_k_best_scored_candidates_are_replayed():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3))
    mb = MiniBatch(torch.randn(2, 2), torch.tensor([0, 1]), torch.zeros(2, dtype=torch.long))
    candidates = torch.randn(6, 2)
    labels = torch.tensor([2, 2, 0, 1, 2, 0])
    mb = mb.append(candidates, labels, torch.zeros(6, dtype=torch.long), name="replay",
                   rows=torch.arange(10, 16))
    strategy = SimpleNamespace(mb=mb, model=model, loss_fn=nn.CrossEntropyLoss(), train_mb_size=2,
                               optimizer=torch.optim.SGD(model.parameters(), lr=0.5))
    plugin = MIRPlugin(mem_size=20, subsample=6, batch_size_mem=3)
    plugin.before_forward(strategy)
    scores = interference_scores(model, F.cross_entropy, mb.x[:2], mb.y[:2], candidates, labels, 0.5)
    top = torch.argsort(scores, descending=True)[:3]
    replay = strategy.mb.segment("replay")
    assert replay.rows.tolist() == (top + 10).tolist()
    assert torch.equal(strategy.mb.x[replay.slice], candidates[top])
    assert torch.equal(strategy.mb.y, torch.cat([torch.tensor([0, 1]), labels[top]]))
    assert strategy.mb.from_memory.tolist() == [False, False, True, True, True]


def test_a_run_draws_subsample_candidates_and_replays_batch_size_mem_of_them():
    seen = []

    class Spy(StrategyPlugin):
        def before_forward(self, strategy, **kwargs):
            if "replay" in strategy.mb:
                seen.append(len(strategy.mb.segment("replay")))

    data = ClassificationDataset(torch.randn(60, 3), torch.arange(60) % 3)
    model = nn.Linear(3, 3)
    plugin = MIRPlugin(mem_size=40, subsample=12, batch_size_mem=4)
    Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=5, plugins=[plugin, Spy()],
          seed=0).train(Experience(data, 0, [0, 1, 2]))
    assert seen and set(seen[2:]) == {4}  # 4 of the (up to) 12 candidates, once the memory holds 12
    assert plugin.draw_size(SimpleNamespace(train_mb_size=5)) == 12


def test_bad_subsample_is_refused():
    with pytest.raises(ValueError, match="subsample must be a positive int, got 0"):
        MIRPlugin(subsample=0)
