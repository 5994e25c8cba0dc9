"""SCR: the supervised contrastive loss against a loop written from the paper's formula, the
criterion over the batch and its view, the nearest-class-mean prediction."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clreplay.benchmarks import Experience
from clreplay.data import ClassificationDataset, MiniBatch
from clreplay.replay.selection.features import extract_features
from clreplay.strategies.contrastive import supcon_loss
from clreplay.strategies.icarl import class_means, nearest_mean_scores
from clreplay.strategies.scr import SCRPlugin
from clreplay.training import Naive


def supcon_by_the_formula(z, labels, t):
    """Khosla et al. Eq. 2, one anchor and one positive at a time."""
    total, anchors = 0.0, 0
    for i in range(len(z)):
        positives = [p for p in range(len(z)) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        denominator = sum(math.exp(float(z[i] @ z[a]) / t) for a in range(len(z)) if a != i)
        total += -sum(math.log(math.exp(float(z[i] @ z[p]) / t) / denominator) for p in positives) / len(positives)
        anchors += 1
    return total / anchors


def test_supcon_matches_the_formula():
    torch.manual_seed(0)
    z = F.normalize(torch.randn(7, 4), dim=1)
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 3])  # class 3 alone: no positive, not an anchor
    assert supcon_loss(z, labels, 0.5).item() == pytest.approx(supcon_by_the_formula(z, labels, 0.5), abs=1e-5)


def _scr(**kwargs):
    model = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 4))
    return model, SCRPlugin(model, mem_size=20, **kwargs)


def test_criterion_is_supcon_over_the_batch_and_its_view_through_the_head():
    model, scr = _scr(noise=0.0, drop=0.0, temperature=0.2)  # an identity view: both views alike
    x = torch.tensor([[1.0, 0.0, 2.0], [0.5, 1.0, -1.0], [0.0, 2.0, 1.0]])
    mb = MiniBatch(x, torch.tensor([0, 1, 0]), torch.zeros(3, dtype=torch.long))
    strategy = SimpleNamespace(mb=mb)
    scr.before_forward(strategy)
    strategy.mb_output = model(x)  # the strategy's forward, tapped
    scr.after_forward(strategy)
    features = model[1](model[0](x))
    z = F.normalize(scr.head(features), dim=1)
    expected = supcon_by_the_formula(torch.cat([z, z]).detach(), [0, 1, 0, 0, 1, 0], 0.2)
    assert scr.criterion(strategy).item() == pytest.approx(expected, abs=1e-5)


def test_prediction_is_the_nearest_mean_of_the_memory_features():
    model, scr = _scr()
    data = ClassificationDataset(torch.randn(40, 3), torch.arange(40) % 2)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=8, plugins=[scr], seed=0)
    strategy.train(Experience(data, 0, [0, 1]))
    memory = scr.ext_mem[0]
    features = extract_features(model, memory, layer_name="1")
    means, present = class_means(features, memory.targets, 2)
    x = torch.randn(5, 3)
    expected = nearest_mean_scores(model[1](model[0](x)), means, present)
    expected = F.pad(expected, (0, 2), value=float("-inf"))  # classes 2, 3: no exemplar
    assert torch.allclose(strategy.predict(x), expected, atol=1e-6)


def test_the_head_is_trained_and_saved_with_its_optimiser():
    model, scr = _scr()
    data = ClassificationDataset(torch.randn(24, 3), torch.arange(24) % 2)
    head_before = [p.detach().clone() for p in scr.head.parameters()]
    Naive(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), train_mb_size=8, plugins=[scr],
          seed=0).train(Experience(data, 0, [0, 1]))
    assert not all(torch.equal(a, b) for a, b in zip(head_before, scr.head.parameters()))
    state = scr.state_dict()
    assert state["head_optimizer"]["state"] and set(state["augment"]) == {"image", "vector"}
    _, fresh = _scr()
    fresh.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(fresh.head.parameters(), scr.head.parameters()))
