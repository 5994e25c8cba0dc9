import math
from types import SimpleNamespace

import pytest
import torch
from conftest import by_hand
from torch import nn

from clreplay import (
    ClassBalancedStoragePolicy,
    ClassExemplarsSelectionStrategy,
    EntropySelectionStrategy,
    MarginSelectionStrategy,
    ParametricStoragePolicy,
)
from clreplay.data import ClassificationDataset
from clreplay.replay import entropy_order, margin_order
from clreplay.replay.registry import make_selection_strategy


class Logits(nn.Module):
    """Outputs the sample itself as logits, recording how it was called."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.calls = []

    def forward(self, x):
        self.calls.append((len(x), self.training, torch.is_grad_enabled()))
        return x * self.scale


def strategy_with(model, data, eval_mb_size=2):
    s = by_hand(data, 0, eval_mb_size=eval_mb_size)
    s.model = model
    return s


# Rows with hand-known entropies (nats) and top-2 margins.
ROWS = torch.tensor([
    [4.0, 0.0, 0.0],   # confident: margin 4
    [0.0, 0.0, 0.0],   # uniform: entropy ln 3, margin 0
    [1.0, 1.0, -9.0],  # two-way tie: entropy ~ln 2, margin 0
    [2.0, 0.0, 0.0],   # margin 2
    [0.0, 0.0, 0.0],   # uniform again
])


def test_entropy_order_by_hand():
    p = torch.softmax(ROWS.double(), dim=1)
    entropy = [-(q * q.log()).sum().item() for q in p]
    assert entropy[1] == pytest.approx(math.log(3)) and entropy[2] == pytest.approx(math.log(2), abs=1e-3)
    # Highest first; the two uniform rows tie and keep index order.
    assert entropy_order(ROWS) == [1, 4, 2, 3, 0]


def test_margin_order_by_hand():
    # Margins [4, 0, 0, 2, 0]: the zero margins in index order, then 2, then 4.
    assert margin_order(ROWS) == [1, 2, 4, 3, 0]


def test_probabilities_of_zero_count_as_zero_entropy():
    logits = torch.tensor([[0.0, float("-inf")], [0.0, 0.0]])
    assert entropy_order(logits) == [1, 0]


def test_strategies_use_the_strategy_model_in_eval_mode_without_gradients():
    model = Logits()
    model.train()
    data = ClassificationDataset(ROWS, torch.zeros(5, dtype=torch.long))
    strategy = strategy_with(model, data, eval_mb_size=2)
    assert EntropySelectionStrategy().make_sorted_indices(strategy, data) == [1, 4, 2, 3, 0]
    assert model.calls == [(2, False, False), (2, False, False), (1, False, False)]
    assert model.training and model.scale.grad is None
    assert MarginSelectionStrategy().make_sorted_indices(strategy, data) == [1, 2, 4, 3, 0]
    assert isinstance(MarginSelectionStrategy(), ClassExemplarsSelectionStrategy)


def test_mode_is_restored_after_an_error():
    class Failing(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model = Failing().train()
    data = ClassificationDataset(ROWS, torch.zeros(5, dtype=torch.long))
    with pytest.raises(RuntimeError, match="boom"):
        EntropySelectionStrategy().make_sorted_indices(strategy_with(model, data), data)
    assert model.training


def test_empty_data_gives_an_empty_order():
    data = ClassificationDataset(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    assert MarginSelectionStrategy().make_sorted_indices(strategy_with(Logits(), data), data) == []


def test_bad_input():
    data = ClassificationDataset(ROWS, torch.zeros(5, dtype=torch.long))
    with pytest.raises(TypeError, match="strategy must have a 'model' attribute holding a torch.nn.Module"):
        EntropySelectionStrategy().make_sorted_indices(SimpleNamespace(), data)
    with pytest.raises(TypeError, match="data must be a ClassificationDataset, got list"):
        EntropySelectionStrategy().make_sorted_indices(strategy_with(Logits(), data), [1, 2])
    with pytest.raises(ValueError, match=r"logits must be 2-D \(samples x classes\) with at least 2 classes, got shape \(3, 1\)"):
        margin_order(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="logits must not be NaN"):
        entropy_order(torch.tensor([[float("nan"), 0.0]]))


@pytest.mark.parametrize("policy_kind", ["class", "parametric"])
def test_policies_keep_the_most_uncertain_samples(policy_kind):
    # Logits (a, -a): entropy falls and the margin grows with |a|.
    a = torch.tensor([3.0, 0.1, -2.0, 0.5, 1.0, -0.2])
    data = ClassificationDataset(torch.stack([a, -a], dim=1), torch.zeros(6, dtype=torch.long))
    for selection in (EntropySelectionStrategy(), MarginSelectionStrategy()):
        if policy_kind == "class":
            policy = ClassBalancedStoragePolicy({}, 3, selection_strategy=selection)
        else:
            policy = ParametricStoragePolicy({}, 3, groupby="class", selection_strategy=selection)
        policy(strategy_with(Logits(), data))
        kept = policy.ext_mem[0].get_batch(torch.arange(3))[0][:, 0].tolist()
        assert kept == pytest.approx([0.1, -0.2, 0.5])


def test_registry_names():
    assert isinstance(make_selection_strategy("entropy"), EntropySelectionStrategy)
    assert isinstance(make_selection_strategy("margin"), MarginSelectionStrategy)
