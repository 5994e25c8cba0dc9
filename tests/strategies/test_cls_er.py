"""CLS-ER: the loss by hand, the EMA updates and their draws, the stable model's predictions."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from clreplay.benchmarks import Experience
from clreplay.data import ClassificationDataset, MiniBatch
from clreplay.strategies.cls_er import CLSERPlugin, confident_logits, ema_decay, ema_update
from clreplay.training import Naive


def _linear(*rows):
    layer = nn.Linear(1, len(rows), bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(rows).view(-1, 1))
    return layer


def test_loss_is_joint_ce_plus_weighted_mse_to_the_more_confident_ema_model():
    plugin = CLSERPlugin(_linear(0.0, 0.0), mem_size=10, reg_weight=0.5)
    plugin.stable, plugin.plastic = _linear(1.0, 0.0), _linear(0.0, 1.0)  # logits (x, 0) and (0, x)
    zeros = torch.zeros(1, dtype=torch.long)
    mb = MiniBatch(torch.zeros(1, 1), torch.tensor([0]), zeros)
    mb = mb.append(torch.tensor([[2.0], [3.0]]), torch.tensor([0, 1]), torch.zeros(2, dtype=torch.long),
                   name="replay", rows=torch.tensor([0, 1]))
    out = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    strategy = SimpleNamespace(mb=mb, mb_output=out, loss_fn=nn.CrossEntropyLoss())
    # Row x=2, y=0: the stable model (2, 0) is the more confident: target (2, 0).
    # Row x=3, y=1: the plastic model (0, 3) is: target (0, 3). Squared errors 1, 0, 0, 4.
    ce = (math.log(2) + 2 * math.log(1 + math.exp(-1))) / 3  # one mean over the 3 rows
    assert plugin.criterion(strategy).item() == pytest.approx(ce + 0.5 * 5 / 4, abs=1e-6)


def test_confident_logits_prefers_the_plastic_model_on_a_tie():
    # The same softmax (logits shifted by one): a tie, and the plastic model's logits are kept.
    chosen = confident_logits(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 2.0]]), torch.tensor([1]))
    assert torch.equal(chosen, torch.tensor([[1.0, 2.0]]))
    assert torch.equal(confident_logits(torch.tensor([[5.0, 0.0]]), torch.tensor([[0.0, 5.0]]),
                                        torch.tensor([1])), torch.tensor([[0.0, 5.0]]))


def test_ema_decay_warms_up_then_holds():
    assert [ema_decay(s, 0.9) for s in (1, 2, 9, 10, 100)] == [0.5, 1 - 1 / 3, 0.9, 0.9, 0.9]


def test_ema_update_averages_parameters_and_copies_buffers():
    average, model = nn.BatchNorm1d(1), nn.BatchNorm1d(1)
    with torch.no_grad():
        average.weight.fill_(1.0), model.weight.fill_(2.0)
        model.running_mean.fill_(7.0)
    ema_update(average, model, 0.25)
    assert average.weight.item() == 0.25 * 1.0 + 0.75 * 2.0 and average.running_mean.item() == 7.0


def _one_step(plugin_kwargs):
    model = _linear(0.5, -0.5)
    plugin = CLSERPlugin(model, mem_size=10, **plugin_kwargs)
    before = model.weight.detach().clone()
    data = ClassificationDataset(torch.tensor([[1.0], [2.0]]), torch.tensor([0, 1]))
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.5), train_mb_size=2, plugins=[plugin],
                     seed=0)
    strategy.train(Experience(data, 0, [0, 1]))
    return plugin, before, model.weight.detach().clone(), strategy


def test_each_ema_model_follows_the_working_model_after_a_step_with_its_probability():
    plugin, before, after, _ = _one_step({"plastic_freq": 1.0, "stable_freq": 0.0, "plastic_alpha": 0.99})
    assert plugin.global_step == 1
    # Step 1: the decay is warmed up to min(1 - 1/2, 0.99) = 0.5.
    assert torch.allclose(plugin.plastic.weight, 0.5 * before + 0.5 * after)
    assert torch.equal(plugin.stable.weight, before)  # r_S = 0: never updated


def test_the_stable_model_predicts():
    plugin, _, _, strategy = _one_step({})
    x = torch.tensor([[1.0], [-3.0]])
    assert torch.equal(strategy.predict(x), plugin.stable(x))
    assert not torch.equal(strategy.predict(x), strategy.model(x))


def test_the_ema_models_and_the_step_count_are_saved():
    plugin, _, _, _ = _one_step({"plastic_freq": 1.0})
    state = plugin.state_dict()
    fresh = CLSERPlugin(_linear(0.0, 0.0), mem_size=10)
    fresh.load_state_dict(state)
    assert fresh.global_step == 1 and torch.equal(fresh.plastic.weight, plugin.plastic.weight)
    assert torch.equal(fresh.stable.weight, plugin.stable.weight)


@pytest.mark.parametrize("kwargs, message", [
    ({"reg_weight": -1.0}, "reg_weight must be a number >= 0.0, got -1.0"),
    ({"stable_alpha": 1.5}, "stable_alpha must be at most 1.0, got 1.5"),
    ({"plastic_freq": -0.1}, "plastic_freq must be a number >= 0.0"),
])
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CLSERPlugin(nn.Linear(1, 2), **kwargs)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        CLSERPlugin("model")
