"""OnPro: the prototype equilibrium and OCM's NT-Xent by hand, rotations, APF's mixing."""

import math

import pytest
import torch
from torch import nn

from clreplay.benchmarks import Experience
from clreplay.data import ClassificationDataset
from clreplay.strategies.contrastive import nt_xent, rotations
from clreplay.strategies.onpro import OnProPlugin, ope_loss, pair_probabilities
from clreplay.training import Naive


def test_ope_by_hand():
    # Classes 0 and 1, two views each; prototypes (1, 0) and (0, 1) in both views.
    z1 = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    loss, means = ope_loss(z1, z1, torch.tensor([0, 0, 1]), 0.5)
    # Each prototype's positive (its other view, similarity 1) against the other three (1, 0, 0).
    e = math.exp(1 / 0.5)
    assert loss.item() == pytest.approx(-math.log(e / (e + 2)), abs=1e-6)
    assert means.tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_nt_xent_variants_by_hand():
    sim = torch.tensor([[1.0, 0.0, 0.5, 0.0], [0.0, 1.0, 0.0, 0.5], [0.5, 0.0, 1.0, 0.0], [0.0, 0.5, 0.0, 1.0]])
    labels = torch.tensor([0, 1])  # two samples, their second views after them: labels 0, 1, 0, 1
    # uni: each row's softmax (T = 1) over its 4 entries, S = -log p, averaged over its label's 2 columns.
    row = torch.tensor([1.0, 0.0, 0.5, 0.0])
    s = -torch.log_softmax(row - 1.0, dim=0)  # max subtracted, as the code does
    uni = (s[0] + s[2]) / 2  # every row alike by symmetry
    assert nt_xent(sim, labels, 1.0, "uni").item() == pytest.approx(uni.item(), rel=1e-5)
    # n: without itself (a -log(eps) constant on the diagonal), counted twice, plus the view pairs.
    e = torch.exp(row - 1.0)
    e[0] = 0
    s = -torch.log(e / e.sum() + 1e-8)
    n_loss = 2 * (s[0] + s[2]) / 2 + s[2]
    assert nt_xent(sim, labels, 1.0, "n").item() == pytest.approx(n_loss.item(), rel=1e-5)
    with pytest.raises(ValueError, match="variant must be one of 'n', 'uni', 'pre', got 'x'"):
        nt_xent(sim, labels, 1.0, "x")


def test_rotations_and_pair_probabilities():
    x = torch.arange(4.0).view(1, 1, 2, 2)
    r = rotations(x)
    assert r.shape == (4, 1, 2, 2) and torch.equal(r[2], x[0].flip(1).flip(2))
    assert torch.equal(rotations(torch.ones(3, 5)), torch.ones(3, 5))  # vectors: themselves
    p = pair_probabilities(torch.tensor([[0.0], [2.0], [3.0]]))  # distances 2, 3, 1
    logits = torch.tensor([1 / 2, 1 / 3, 1.0])
    assert torch.allclose(p, torch.softmax(logits, dim=0))


def test_apf_mixes_the_base_share_with_partners_and_the_rest_by_class_pairs():
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3))
    onpro = OnProPlugin(model, mem_size=10, mixup_base=0.5, mixup_p=1.0, proj_dim=4)
    memory = ClassificationDataset(torch.arange(20.0).view(10, 2), torch.tensor([0] * 4 + [1] * 3 + [2] * 3))
    onpro.prototypes, onpro.prototype_classes = torch.tensor([[0.0], [1.0], [5.0]]), [0, 1, 2]
    x, y = memory.get_batch(torch.arange(6))[:2]
    mixed, ya, yb, lam = onpro.mix_memory(x, y, memory)
    assert mixed.shape == (6, 2) and len(ya) == len(yb) == len(lam) == 6
    assert bool(((lam[:3] >= 0) & (lam[:3] <= 0.6)).all())  # the base share: lambda ~ U(0, 0.6)
    assert set(ya[:3].tolist()) <= set(y.tolist())
    assert all(a < b for a, b in zip(ya[3:].tolist(), yb[3:].tolist()))  # class pairs (i < j)


def test_the_classifier_learns_from_the_stream_first_then_from_the_mixed_memory():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 4))
    onpro = OnProPlugin(model, mem_size=20, proj_dim=8)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.05), train_mb_size=6, plugins=[onpro],
                     seed=0)
    for e in range(2):
        data = ClassificationDataset(torch.randn(24, 3) + 3 * e, torch.tensor([2 * e, 2 * e + 1] * 12))
        strategy.train(Experience(data, e, [2 * e, 2 * e + 1]))
    assert onpro.seen_before == [0, 1, 2, 3] and torch.isfinite(strategy.loss)
