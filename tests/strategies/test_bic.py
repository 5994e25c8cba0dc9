"""BiC: the correction, the distillation and the stage-1 loss by hand; held-out samples never
trained on; the correction fitted on them and applied in prediction."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clreplay.benchmarks import Experience
from clreplay.data import ClassificationDataset, MiniBatch
from clreplay.strategies.bic import BiCPlugin, correct, distillation, fit_bias
from clreplay.strategies.er_ace import mask_logits
from clreplay.training import Naive, StrategyPlugin


def test_correction_and_distillation_by_hand():
    out = correct(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([2]), torch.tensor(2.0), torch.tensor(-1.0))
    assert out.tolist() == [[1.0, 2.0, 5.0]]
    # Old classes 0, 1; T = 1: -sum softmax(old) log softmax(new) over them.
    d = distillation(torch.tensor([[0.0, math.log(3.0), 9.0]]), torch.tensor([[0.0, 0.0, -9.0]]),
                     torch.tensor([0, 1]), 1.0)
    assert d.item() == pytest.approx(-(0.5 * math.log(0.25) + 0.5 * math.log(0.75)))


def test_stage_one_loss_weighs_ce_and_distillation_by_the_share_of_old_classes():
    model = nn.Linear(1, 4, bias=False)
    bic = BiCPlugin(model, mem_size=10, temperature=2.0)
    bic.seen_classes, bic._new, bic._current = [0, 1, 2], [3], [3]  # lambda = 3 / 4
    old = nn.Linear(1, 4, bias=False)
    with torch.no_grad():
        old.weight.copy_(torch.tensor([[1.0], [0.0], [2.0], [5.0]]))
    bic._old_model = old
    bic.corrections = [{"classes": [2], "alpha": torch.tensor(0.5), "beta": torch.tensor(1.0)}]
    x = torch.tensor([[1.0], [2.0]])
    mb = MiniBatch(x, torch.tensor([3, 0]), torch.zeros(2, dtype=torch.long))
    out = torch.tensor([[0.0, 1.0, 2.0, 3.0], [1.0, 0.0, 0.0, 0.0]])
    strategy = SimpleNamespace(mb=mb, mb_output=out)
    teacher = old(x)
    teacher[:, 2] = 0.5 * teacher[:, 2] + 1.0  # the previous model as it predicted (corrected)
    targets = F.softmax(teacher[:, :3] / 2, dim=1)
    kd = -(targets * F.log_softmax(out[:, :3] / 2, dim=1)).sum(dim=1).mean() * 4
    ce = F.cross_entropy(out, torch.tensor([3, 0]))  # every class seen: nothing masked
    assert bic.criterion(strategy).item() == pytest.approx((0.25 * ce + 0.75 * kd).item(), abs=1e-6)


def test_fitted_correction_lowers_the_validation_loss():
    torch.manual_seed(0)
    y = torch.tensor([0, 1, 2, 3] * 5)
    logits = torch.randn(20, 4) + 3.0 * F.one_hot(y, 4)
    logits[:, 3] += 4.0  # the new class's logits are biased up
    seen, new = torch.ones(4, dtype=torch.bool), torch.tensor([3])
    alpha, beta = fit_bias(logits, y, seen, new, steps=300, lr=0.05).tolist()

    def loss(a, b):
        return F.cross_entropy(mask_logits(correct(logits, new, torch.tensor(a), torch.tensor(b)), seen), y).item()

    assert loss(alpha, beta) < loss(1.0, 0.0) - 0.5
    assert beta < 0


class Seen(StrategyPlugin):
    """Every sample id (feature 0) trained on, per experience."""

    def __init__(self):
        self.ids = {}

    def before_forward(self, strategy, **kwargs):
        e = strategy.experience.current_experience
        self.ids.setdefault(e, set()).update(strategy.mb.x[:, 0].long().tolist())


def _stream():
    experiences = []
    for e in range(3):
        ids = torch.arange(40) + 100 * e
        y = torch.tensor([2 * e, 2 * e + 1] * 20)
        x = torch.stack([ids.float(), y.float() * 0.1, torch.cos(ids.float())], dim=1)
        experiences.append(Experience(ClassificationDataset(x, y), e, [2 * e, 2 * e + 1]))
    return experiences


def test_held_out_samples_are_never_trained_on_and_fit_the_correction():
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 6))
    bic = BiCPlugin(model, mem_size=30, holdout=0.2, bias_epochs=20, bias_lr=0.01, batch_size_mem=4)
    seen = Seen()
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.01), train_mb_size=8, train_epochs=2,
                     plugins=[bic, seen], seed=0)
    validation_ids = []
    for experience in _stream():
        strategy.train(experience)
        held = {int(i) for g in bic.validation.ext_mem.values() for i in g.get_batch(torch.arange(len(g)))[0][:, 0]}
        new = held - set(validation_ids)
        validation_ids = sorted(held)
        # The validation memory's samples of this experience were held out of its training.
        assert new and not new & seen.ids[experience.current_experience]
        replayed = {int(i) for g in bic.ext_mem.values() for i in g.get_batch(torch.arange(len(g)))[0][:, 0]}
        assert not replayed & held  # never replayed either
    assert len(bic.validation) == 6
    assert sum(len(g) for g in bic.ext_mem.values()) <= 24  # 30 in all, 6 held out
    assert [c["classes"] for c in bic.corrections] == [[0, 1], [2, 3], [4, 5]]
    assert bic.corrections[0]["alpha"].item() == 1.0 and bic.corrections[0]["beta"].item() == 0.0
    assert bic.corrections[2]["alpha"].item() != 1.0  # fitted after the third experience
    x = torch.randn(5, 3)
    c = bic.corrections[-1]
    expected = model(x)
    expected[:, [4, 5]] = c["alpha"] * expected[:, [4, 5]] + c["beta"]
    assert torch.allclose(strategy.predict(x), expected)


def test_a_one_sample_memory_holds_nothing_out():
    bic = BiCPlugin(nn.Linear(2, 2), mem_size=1)
    assert bic.validation is None and bic.storage_policy.mem_size == 1 and bic.mem_size == 1


def test_a_domain_incremental_experience_keeps_the_cross_entropy():
    """No class is new: lambda = n / (n + m) with m the experience's classes, 2 / 4 here."""
    model = nn.Linear(1, 2, bias=False)
    bic = BiCPlugin(model, mem_size=10, temperature=1.0)
    bic.seen_classes, bic._new, bic._current = [0, 1], [], [0, 1]
    bic._old_model = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        bic._old_model.weight.zero_()
    mb = MiniBatch(torch.ones(1, 1), torch.tensor([0]), torch.zeros(1, dtype=torch.long))
    out = torch.tensor([[1.0, 0.0]])
    ce = F.cross_entropy(out, torch.tensor([0]))
    kd = -(0.5 * F.log_softmax(out, dim=1)).sum()  # uniform teacher
    assert bic.criterion(SimpleNamespace(mb=mb, mb_output=out)).item() == pytest.approx((0.5 * ce + 0.5 * kd).item())
