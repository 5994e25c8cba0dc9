"""Selection by features: herding (iCaRL) and closest to the centre."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import List

import torch
from torch import Tensor, nn

from clreplay.data.dataset import ClassificationDataset
from clreplay.replay.selection.base import ClassExemplarsSelectionStrategy
from clreplay.replay.selection.features import extract_features, strategy_settings

#: Above this many samples herding streams dot products instead of holding a Gram matrix.
_GRAM_MAX_SAMPLES = 8192


def check_features(features: Tensor) -> Tensor:
    if not isinstance(features, Tensor):
        raise TypeError(f"features must be a Tensor, got {type(features).__name__}")
    if features.dim() != 2:
        raise ValueError(f"features must be 2-D (samples x features), got shape {tuple(features.shape)}")
    if not torch.isfinite(features).all():
        bad = int((~torch.isfinite(features)).any(dim=1).sum())
        raise ValueError(f"features must be finite, got NaN or inf in {bad} of {len(features)} samples")
    return features


class FeatureBasedExemplarsSelectionStrategy(ClassExemplarsSelectionStrategy, ABC):
    """Base class to select exemplars from their features.

    The features of a sample are the flattened output of the submodule
    ``layer_name`` of ``model`` (``""`` names the model itself), computed in eval
    mode without gradients, in batches of ``strategy.eval_mb_size`` on
    ``strategy.device``; the model's mode is restored afterwards. In a distributed
    run each rank computes a share of the batches and all of them are gathered, so
    every rank orders the same features.
    """

    needs_model = True

    def __init__(self, model: nn.Module, layer_name: str) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(layer_name, str):
            raise TypeError(f"layer_name must be a str, got {type(layer_name).__name__}")
        names = [name for name, _ in model.named_modules()]
        if layer_name not in names:
            valid = ", ".join(repr(n) for n in names)
            raise ValueError(f"layer_name must name a submodule of model ({valid}), got {layer_name!r}")
        self.model = model
        self.layer_name = layer_name

    def compute_features(self, strategy, data: ClassificationDataset) -> Tensor:
        """Flattened ``layer_name`` outputs of every sample of ``data``, on ``strategy.device``."""
        device, batch_size, distributed = strategy_settings(strategy)
        return extract_features(self.model, data, layer_name=self.layer_name, device=device,
                                batch_size=batch_size, gather=distributed)

    def make_sorted_indices(self, strategy, data: ClassificationDataset) -> List[int]:
        return self.make_sorted_indices_from_features(self.compute_features(strategy, data))

    @abstractmethod
    def make_sorted_indices_from_features(self, features: Tensor) -> List[int]:
        """The keeping order of the samples whose features are the rows of ``features``."""


def herding_order(features: Tensor) -> List[int]:
    """The iCaRL herding order of the rows of ``features``.

    Step ``i`` picks the unpicked row ``f_j`` that brings the mean of the picked
    rows closest (squared L2) to the mean ``mu`` of all rows; ties go to the lowest
    index. Since ``||(i+1) mu - S - f_j||^2 = const + ||f_j||^2 - 2 f_j.((i+1) mu - S)``
    for the sum ``S`` of the picked rows, each step only needs ``f_j.S``, which is
    updated with one column of the Gram matrix: O(N^2 D) once in BLAS, O(N) a step.

    >>> herding_order(torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]]))
    [3, 2, 1, 4, 0]
    """
    feats = check_features(features).double()
    n = len(feats)
    if n == 0:
        return []
    sq_norms = (feats * feats).sum(dim=1)
    mean_dots = feats @ feats.mean(dim=0)  # f_j . mu
    picked_dots = torch.zeros(n, dtype=feats.dtype, device=feats.device)  # f_j . S
    gram = feats @ feats.T if n <= _GRAM_MAX_SAMPLES else None
    # A picked row's norm becomes +inf, so its score is +inf and argmin skips it
    # (no mask pass per step). The buffers are reused across steps; the scores are
    # the same floats as ||f_j||^2 - 2 ((i+1) f_j.mu - f_j.S): scaling by 2 is exact.
    norms = sq_norms.clone()
    pull = torch.empty_like(sq_norms)
    scores = torch.empty_like(sq_norms)
    # On the CPU the pick is read as an int (cheapest); on a GPU it stays a device
    # tensor, so the loop never waits for the host.
    host = feats.device.type == "cpu"
    order = [] if host else torch.empty(n, dtype=torch.long, device=feats.device)
    for i in range(n):
        torch.mul(mean_dots, i + 1, out=pull)
        pull.sub_(picked_dots)
        torch.sub(norms, pull, alpha=2.0, out=scores)
        j = torch.argmin(scores)  # first minimum: ties go to the lowest index
        if host:
            j = int(j)
            order.append(j)
        else:
            order[i] = j
        norms[j] = float("inf")
        picked_dots += gram[j] if gram is not None else feats @ feats[j]
    return order if host else order.tolist()


def closest_to_center_order(features: Tensor) -> List[int]:
    """Rows of ``features`` by ascending distance to their mean; ties to the lowest index.

    >>> closest_to_center_order(torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]]))
    [3, 2, 1, 0, 4]
    """
    feats = check_features(features).double()
    if len(feats) == 0:
        return []
    distances = ((feats - feats.mean(dim=0)) ** 2).sum(dim=1)
    return torch.sort(distances, stable=True).indices.tolist()


class HerdingSelectionStrategy(FeatureBasedExemplarsSelectionStrategy):
    """Herding, as in iCaRL: greedily keep the sample that brings the mean of the
    kept ones closest to the mean of all (see :func:`herding_order`)."""

    name = "herding"
    summary = "iCaRL herding in feature space"

    def make_sorted_indices_from_features(self, features: Tensor) -> List[int]:
        return herding_order(features)


class ClosestToCenterSelectionStrategy(FeatureBasedExemplarsSelectionStrategy):
    """Keep the samples closest to the centre of all samples in feature space first."""

    name = "closest"
    summary = "closest to the class centre in feature space first"

    def make_sorted_indices_from_features(self, features: Tensor) -> List[int]:
        return closest_to_center_order(features)
