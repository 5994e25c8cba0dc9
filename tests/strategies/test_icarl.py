"""iCaRL: nearest-mean-of-exemplars prediction on 1-D features, distillation targets, the loss."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from clreplay.data import MiniBatch
from clreplay.models import make_mlp
from clreplay.strategies import ICaRLPlugin, class_means, distillation_targets, nearest_mean_scores


def test_nearest_mean_on_one_dimensional_features():
    # Class 0's exemplars at 2 and 3, class 1's at -1 and -4: normalised, +1 and -1.
    features = torch.tensor([[2.0], [3.0], [-1.0], [-4.0]])
    means, present = class_means(features, torch.tensor([0, 0, 1, 1]), 3)
    assert means.tolist() == [[1.0], [-1.0], [0.0]] and present.tolist() == [True, True, False]
    scores = nearest_mean_scores(torch.tensor([[0.5], [-2.0], [7.0]]), means, present)
    # Squared distances of +1 / -1 / +1 to the means +1 and -1: 0 and 4, 4 and 0, 0 and 4.
    assert scores.tolist() == [[0.0, -4.0, float("-inf")], [-4.0, 0.0, float("-inf")],
                               [0.0, -4.0, float("-inf")]]
    assert scores.argmax(dim=1).tolist() == [0, 1, 0]


def test_plugin_predicts_with_the_class_means():
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.Identity(), nn.Linear(1, 3))
    with torch.no_grad():
        model[0].weight.fill_(1.0)  # features: the input itself
    icarl = ICaRLPlugin(model, mem_size=4, feature_layer="1")
    icarl._means, icarl._present = torch.tensor([[1.0], [-1.0]]), torch.tensor([True, True])
    scores = icarl.predict(SimpleNamespace(model=model), torch.tensor([[3.0], [-0.5]]))
    assert scores.tolist() == [[0.0, -4.0, float("-inf")], [-4.0, 0.0, float("-inf")]]


def test_distillation_targets_and_loss_by_hand():
    targets = distillation_targets(torch.tensor([2, 0]), torch.tensor([0, 1, 2, 3]), 2,
                                   torch.tensor([[0.9, 0.2, 0.7, 0.7], [0.6, 0.1, 0.7, 0.7]]))
    # Old classes 0, 1: the previous model's probabilities (even for a sample of class 0);
    # new classes 2, 3: one-hot.
    assert torch.equal(targets, torch.tensor([[0.9, 0.2, 1.0, 0.0], [0.6, 0.1, 0.0, 0.0]]))
    model = make_mlp(2, 4, [3], seed=0)
    icarl = ICaRLPlugin(model, mem_size=4)
    icarl._columns = torch.tensor([0, 1])  # first experience: classes 0 and 1, no previous model
    mb = MiniBatch(torch.zeros(2, 2), torch.tensor([1, 0]), torch.zeros(2, dtype=torch.long))
    out = torch.tensor([[0.0, 0.0, 5.0, 5.0], [0.0, 0.0, 5.0, 5.0]])
    loss = icarl.criterion(SimpleNamespace(mb=mb, mb_output=out))
    # Only the seen classes' outputs count; every logit 0: BCE is log 2 whatever the target.
    assert loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-7)


def test_feature_layer_is_required_for_other_models():
    with pytest.raises(ValueError, match="feature_layer must name the submodule"):
        ICaRLPlugin(nn.Linear(2, 2), 10)
