import pytest
import torch
from torch import nn

from clreplay import (
    ClassExemplarsSelectionStrategy,
    ClosestToCenterSelectionStrategy,
    FeatureBasedExemplarsSelectionStrategy,
    HerdingSelectionStrategy,
    RandomExemplarsSelectionStrategy,
)
from clreplay.data import ClassificationDataset
from clreplay.replay import closest_to_center_order, herding_order

FEATURES_1D = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]])  # mean 3.2


def reference_herding(features):
    """The textbook algorithm: try every candidate, recompute each candidate mean."""
    feats = features.double()
    mu = feats.mean(0)
    picked, order = [], []
    for _ in range(len(feats)):
        best, best_d = None, None
        for j in range(len(feats)):
            if j in order:
                continue
            mean = (sum(feats[k] for k in picked) + feats[j]) / (len(picked) + 1) if picked else feats[j]
            d = float(((mu - mean) ** 2).sum())
            if best_d is None or d < best_d:
                best, best_d = j, d
        order.append(best)
        picked.append(best)
    return order


def test_herding_on_hand_computed_1d_features():
    # step 0: 3 (|3-3.2|); step 1: want f near 3.4 -> 2; step 2: want 4.6 -> 1;
    # step 3: want 6.8 -> 10 (idx 4); then 0
    assert herding_order(FEATURES_1D) == [3, 2, 1, 4, 0]


def test_closest_to_center_on_hand_computed_1d_features():
    assert closest_to_center_order(FEATURES_1D) == [3, 2, 1, 0, 4]


def test_ties_go_to_the_lowest_index():
    feats = torch.tensor([[1.0], [1.0], [-1.0], [-1.0]])
    assert herding_order(feats) == [0, 2, 1, 3]
    assert closest_to_center_order(feats) == [0, 1, 2, 3]


@pytest.mark.parametrize("seed", range(4))
def test_herding_matches_the_reference(seed):
    feats = torch.randn(40, 6, generator=torch.Generator().manual_seed(seed))
    order = herding_order(feats)
    assert order == reference_herding(feats)
    assert all(type(i) is int for i in order) and sorted(order) == list(range(40))


def test_non_finite_features_are_refused():
    feats = torch.tensor([[0.0], [float("nan")], [float("inf")]])
    with pytest.raises(ValueError, match="features must be finite, got NaN or inf in 2 of 3 samples"):
        herding_order(feats)
    with pytest.raises(ValueError, match="features must be finite"):
        closest_to_center_order(feats)
    with pytest.raises(ValueError, match=r"features must be 2-D \(samples x features\), got shape \(3,\)"):
        herding_order(torch.zeros(3))


def test_empty_features():
    assert herding_order(torch.zeros(0, 3)) == [] and closest_to_center_order(torch.zeros(0, 3)) == []


class Embed(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(1, 1, bias=False)
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Linear(1, 2)
        with torch.no_grad():
            self.body.weight.fill_(2.0)

    def forward(self, x):
        return self.head(self.dropout(self.body(x)))


def test_feature_based_uses_the_named_layer_in_eval_mode_and_restores_mode():
    from types import SimpleNamespace

    model = Embed()
    model.train()
    data = ClassificationDataset(FEATURES_1D, torch.zeros(5, dtype=torch.long))
    strategy = SimpleNamespace(device="cpu", eval_mb_size=2)
    herding = HerdingSelectionStrategy(model, "body")
    feats = herding.compute_features(strategy, data)
    assert torch.equal(feats, 2 * FEATURES_1D)  # the layer's output, in batches of 2
    assert model.training
    assert herding.make_sorted_indices(strategy, data) == [3, 2, 1, 4, 0]
    closest = ClosestToCenterSelectionStrategy(model, "body")
    assert closest.make_sorted_indices(strategy, data.subset([4, 3, 2])) == [1, 2, 0]
    # dropout after the layer is in eval mode: the same features every time
    assert torch.equal(herding.compute_features(strategy, data), feats)


def test_unknown_layer_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"layer_name must name a submodule of model \('', 'body', 'dropout', 'head'\), got 'bdy'"):
        HerdingSelectionStrategy(Embed(), "bdy")


def test_random_selection_is_a_seeded_permutation():
    data = list(range(10))
    a = RandomExemplarsSelectionStrategy(seed=3).make_sorted_indices(None, data)
    b = RandomExemplarsSelectionStrategy(seed=3).make_sorted_indices(None, data)
    assert a == b and sorted(a) == data and a != data
    assert all(type(i) is int for i in a)


def test_abstract_bases():
    with pytest.raises(TypeError, match="abstract"):
        ClassExemplarsSelectionStrategy()

    class HalfDone(FeatureBasedExemplarsSelectionStrategy):
        pass

    with pytest.raises(TypeError, match="abstract"):
        HalfDone(Embed(), "body")
