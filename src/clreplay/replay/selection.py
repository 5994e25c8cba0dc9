"""Exemplar selection strategies: in which order a class's samples are kept.

A strategy returns a priority order over a dataset; a storage policy keeps a
prefix of it, so the last indices are the first to be dropped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import List

import torch
from torch import Tensor, nn

from clreplay._seeding import Seeded
from clreplay.data.dataset import ClassificationDataset

#: Above this many samples herding streams dot products instead of holding a Gram matrix.
_GRAM_MAX_SAMPLES = 8192


class ClassExemplarsSelectionStrategy(ABC):
    """Base class to define how to select class exemplars from a dataset."""

    @abstractmethod
    def make_sorted_indices(self, strategy, data: ClassificationDataset) -> List[int]:
        """The indices of ``data`` in keeping order: the last ones are removed first."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class RandomExemplarsSelectionStrategy(Seeded, ClassExemplarsSelectionStrategy):
    """Select the exemplars at random: a permutation drawn from the strategy's own generator.

    >>> RandomExemplarsSelectionStrategy(seed=0).make_sorted_indices(None, range(5))
    [4, 0, 1, 3, 2]
    """

    _seed_name = "selection_strategy"

    def __init__(self, *, seed: int | None = None) -> None:
        self._init_seed(seed)

    def make_sorted_indices(self, strategy, data) -> List[int]:
        if not hasattr(data, "__len__"):
            raise TypeError(f"data must be a sized dataset, got {type(data).__name__}")
        return torch.randperm(len(data), generator=self.generator).tolist()

    def state_dict(self) -> dict:
        return self._seed_state()

    def load_state_dict(self, state: dict) -> None:
        self._load_seed_state(state)


def check_sorted_indices(order, n: int, owner, *, complete: bool = False) -> Tensor:
    """``order`` from ``owner.make_sorted_indices`` as a LongTensor of distinct positions
    in ``[0, n)`` (every one of them when ``complete``), or an error naming ``owner``."""
    try:
        idx = torch.as_tensor(list(order), dtype=torch.long)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"{type(owner).__name__}.make_sorted_indices must return a list of ints, got {order!r}"
        ) from err
    distinct = len(torch.unique(idx)) == len(idx)
    in_range = idx.numel() == 0 or (idx.min() >= 0 and idx.max() < n)
    if not (distinct and in_range and (len(idx) == n or not complete)):
        what = "each index in" if complete else "distinct indices in"
        raise ValueError(
            f"{type(owner).__name__}.make_sorted_indices must return {what} [0, {n})"
            f"{' once' if complete else ''}, got {idx.tolist()}"
        )
    return idx


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
    ``strategy.device``; the model's mode is restored afterwards.
    """

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

    @torch.no_grad()
    def compute_features(self, strategy, data: ClassificationDataset) -> Tensor:
        """Flattened ``layer_name`` outputs of every sample of ``data``, on ``strategy.device``."""
        if not isinstance(data, ClassificationDataset):
            raise TypeError(f"data must be a ClassificationDataset, got {type(data).__name__}")
        device = torch.device(getattr(strategy, "device", "cpu"))
        batch_size = getattr(strategy, "eval_mb_size", None) or max(len(data), 1)
        layer = dict(self.model.named_modules())[self.layer_name]
        captured: List[Tensor] = []
        handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
        was_training = self.model.training
        self.model.eval()
        try:
            chunks = []
            for start in range(0, len(data), batch_size):
                positions = torch.arange(start, min(start + batch_size, len(data)))
                x, _, _ = data.get_batch(positions)
                captured.clear()
                self.model(x.to(device))
                chunks.append(captured[-1].flatten(start_dim=1))
        finally:
            handle.remove()
            self.model.train(was_training)
        if not chunks:
            return torch.empty(0, 0, device=device)
        return torch.cat(chunks)

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

    def make_sorted_indices_from_features(self, features: Tensor) -> List[int]:
        return herding_order(features)


class ClosestToCenterSelectionStrategy(FeatureBasedExemplarsSelectionStrategy):
    """Keep the samples closest to the centre of all samples in feature space first."""

    def make_sorted_indices_from_features(self, features: Tensor) -> List[int]:
        return closest_to_center_order(features)
