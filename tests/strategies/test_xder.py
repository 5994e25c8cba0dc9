"""X-DER on a domain-incremental stream, where no experience brings a new class."""

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from clreplay.benchmarks import Experience
from clreplay.data import ClassificationDataset, MiniBatch
from clreplay.models import make_mlp
from clreplay.strategies.xder import XDERPlugin
from clreplay.training import Naive


def test_an_experience_without_new_classes_trains_on_its_own_classes_without_the_past_constraint():
    """Before: the stream's cross-entropy over the (empty) set of new classes was inf."""
    xder = XDERPlugin(mem_size=10, eta=0.5, margin=0.3)
    xder.experience_classes = [[0, 1]]
    xder._current, xder._brings_new = [0, 1], False  # what before_training_exp sets (tested below)
    mb = MiniBatch(torch.zeros(2, 1), torch.tensor([0, 1]), torch.zeros(2, dtype=torch.long))
    out = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    # -log(e^2 / (e^2 + 1)) and log 2, averaged: no margin term, no future classes (width 2)
    expected = (math.log1p(math.exp(-2.0)) + math.log(2.0)) / 2
    loss = xder.criterion(SimpleNamespace(mb=mb, mb_output=out))
    assert loss.item() == F.cross_entropy(out, mb.y).item()
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_a_domain_incremental_stream_trains_to_finite_losses():
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([0, 1] * 20)
    x = torch.randn(40, 4, generator=g) + y.unsqueeze(1).float()
    experiences = [Experience(ClassificationDataset(x + e, y), e, [0, 1]) for e in range(3)]
    model = make_mlp(4, 2, [8], seed=0)
    losses = []
    xder = XDERPlugin(mem_size=12)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=8, train_epochs=1,
                     plugins=[xder], seed=0)
    for experience in experiences:
        strategy.train(experience)
        losses.append(float(strategy.loss.detach()))
    assert all(math.isfinite(v) for v in losses), losses
    assert xder._current == [0, 1] and not xder._brings_new and xder.experience_classes == [[0, 1]] * 3
