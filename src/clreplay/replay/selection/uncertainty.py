"""Exemplar selection by the model's uncertainty: predictive entropy and logit margin.

Both strategies score the samples with the strategy's prediction rule
(``strategy.predict``, the model's outputs by default; ``strategy.model`` alone
when the strategy has no ``predict``), in eval mode without gradients, in batches
of ``strategy.eval_mb_size`` on ``strategy.device``, and keep the samples the
model is least sure about first. In a distributed run the outputs are computed
on shares of the batches and gathered, so every rank orders the same numbers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import List

import torch
from torch import Tensor, nn

from clreplay.data.dataset import ClassificationDataset
from clreplay.replay.selection.base import ClassExemplarsSelectionStrategy
from clreplay.replay.selection.features import extract_features, strategy_settings


def _check_logits(logits: Tensor, *, min_classes: int = 1) -> Tensor:
    if not isinstance(logits, Tensor):
        raise TypeError(f"logits must be a Tensor, got {type(logits).__name__}")
    if logits.dim() != 2 or logits.shape[1] < min_classes:
        raise ValueError(
            f"logits must be 2-D (samples x classes) with at least {min_classes} classes, "
            f"got shape {tuple(logits.shape)}"
        )
    if torch.isnan(logits).any():
        raise ValueError("logits must not be NaN, got NaN")
    return logits


def entropy_order(logits: Tensor) -> List[int]:
    """Rows of ``logits`` by decreasing entropy of their softmax; ties to the lowest index.

    Computed in float64; a probability of 0 contributes 0 (``xlogy``).

    >>> entropy_order(torch.tensor([[5.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]))
    [1, 3, 2, 0]
    """
    logits = _check_logits(logits)
    p = torch.softmax(logits.double(), dim=1)
    entropy = -torch.xlogy(p, p).sum(dim=1)
    # A stable ascending sort of -entropy keeps equal entropies in index order.
    return torch.sort(-entropy, stable=True).indices.tolist()


def margin_order(logits: Tensor) -> List[int]:
    """Rows of ``logits`` by increasing gap between their two largest logits; ties to the lowest index.

    >>> margin_order(torch.tensor([[3.0, 0.0, 1.0], [2.0, 2.0, 0.0], [0.5, 0.0, 9.0]]))
    [1, 0, 2]
    """
    logits = _check_logits(logits, min_classes=2)
    top = torch.topk(logits.double(), 2, dim=1).values
    return torch.sort(top[:, 0] - top[:, 1], stable=True).indices.tolist()


class OutputBasedSelectionStrategy(ClassExemplarsSelectionStrategy, ABC):
    """Base class to order exemplars by the outputs of the strategy's prediction rule.

    The outputs (class scores) of every sample come from ``strategy.predict`` if the
    strategy has one, else from ``strategy.model`` (see
    :func:`~clreplay.replay.selection.features.extract_features`).
    """

    needs_model = True

    def compute_outputs(self, strategy, data: ClassificationDataset) -> Tensor:
        """The class scores of every sample of ``data``, one row per sample."""
        model = getattr(strategy, "model", None)
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"strategy must have a 'model' attribute holding a torch.nn.Module, got "
                f"{type(strategy).__name__} with model={type(model).__name__}"
            )
        device, batch_size, distributed = strategy_settings(strategy)
        predict = getattr(strategy, "predict", None)
        if predict is not None and not callable(predict):
            raise TypeError(f"strategy.predict must be callable (x -> class scores) or absent, got "
                            f"{type(predict).__name__}")
        return extract_features(model, data, forward=predict, device=device, batch_size=batch_size,
                                gather=distributed)

    def make_sorted_indices(self, strategy, data: ClassificationDataset) -> List[int]:
        outputs = self.compute_outputs(strategy, data)
        if len(outputs) == 0:
            return []
        return self.make_sorted_indices_from_outputs(outputs)

    @abstractmethod
    def make_sorted_indices_from_outputs(self, logits: Tensor) -> List[int]:
        """The keeping order of the samples whose outputs are the rows of ``logits``."""


class EntropySelectionStrategy(OutputBasedSelectionStrategy):
    """Keep the samples with the highest predictive entropy first (see :func:`entropy_order`)."""

    name = "entropy"
    summary = "EntropySelectionStrategy: highest predictive entropy first"

    def make_sorted_indices_from_outputs(self, logits: Tensor) -> List[int]:
        return entropy_order(logits)


class MarginSelectionStrategy(OutputBasedSelectionStrategy):
    """Keep the samples with the smallest margin between the two top logits first
    (see :func:`margin_order`)."""

    name = "margin"
    summary = "MarginSelectionStrategy: smallest top-2 logit margin first"

    def make_sorted_indices_from_outputs(self, logits: Tensor) -> List[int]:
        return margin_order(logits)
