"""Losses over the segments of a mini-batch: the terms rehearsal methods are written with.

Each helper averages over one or more named segments of ``strategy.mb`` (the
stream, a memory draw). In a distributed run a segment's ``total`` is its size in
the global batch and the strategy scales each rank's loss by its share of the
global batch; the helpers divide by the global size, so the ranks' losses add up
to one process's loss on the global batch, term by term. A mean over the entries
that the model's output selects (the logits stored, the rows that violate a margin)
divides by their count over every rank (:func:`global_sum`, one small all_reduce).
In one process they are plain means.

The speed tricks live here, tested once, not inside the methods' losses: the
cross-entropy of several segments is one call with per-row weights (fewer autograd
nodes: at a batch of 10 the nodes cost more than the arithmetic), and the weights
of a batch layout are built once.
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clreplay import distributed as idist
from clreplay.data.minibatch import MiniBatch

_WEIGHTS: Dict[tuple, Tensor] = {}


def _scale(mb: MiniBatch) -> float:
    """The global batch's size over this rank's slice's (1 in one process)."""
    total = sum(s.total for s in mb.segments)
    return total / len(mb) if len(mb) else 0.0


def is_plain_cross_entropy(loss_fn) -> bool:
    """Whether ``loss_fn`` is the mean cross-entropy with no options (what one weighted
    sum of per-row losses can stand in for).

    >>> is_plain_cross_entropy(nn.CrossEntropyLoss()), is_plain_cross_entropy(nn.CrossEntropyLoss(label_smoothing=0.1))
    (True, False)
    """
    return (loss_fn is None or type(loss_fn) is nn.CrossEntropyLoss) and (
        loss_fn is None or (loss_fn.weight is None and loss_fn.reduction == "mean"
                            and loss_fn.label_smoothing == 0.0 and loss_fn.ignore_index == -100))


def segment_mean(values: Tensor, mb: MiniBatch, name: str) -> Tensor:
    """The mean of per-row ``values`` (one per row of segment ``name``) over the segment.

    >>> mb = MiniBatch(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    >>> segment_mean(torch.tensor([1.0, 2.0, 3.0, 6.0]), mb, "stream").item()
    3.0
    """
    segment, scale = mb.segment(name), _scale(mb)
    if scale == 1 and segment.total == len(segment):
        return values.mean() if len(segment) else values.sum()
    return values.sum() * (scale / max(segment.total, 1))


def cross_entropy(output: Tensor, mb: MiniBatch, weights: Mapping[str, float],
                  loss_fn: Optional[Callable[[Tensor, Tensor], Tensor]] = None) -> Tensor:
    """``sum_s weights[s] * CE(output[s], y[s])`` over the segments ``s`` named in ``weights``
    that ``mb`` holds, each CE a mean over its segment (segments absent count 0).

    With the plain cross-entropy (``loss_fn`` None or ``nn.CrossEntropyLoss()``) it is
    one per-row cross-entropy and one dot product with the rows' weights; any other
    ``loss_fn`` is called on each segment.

    >>> out = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> mb = MiniBatch(torch.zeros(2, 1), torch.tensor([0, 1]), torch.zeros(2, dtype=torch.long))
    >>> mb = mb.append(torch.zeros(1, 1), torch.tensor([0]), torch.zeros(1, dtype=torch.long), name="replay_ce")
    >>> rows = F.cross_entropy(out, mb.y, reduction="none")
    >>> torch.allclose(cross_entropy(out, mb, {"stream": 1.0, "replay_ce": 0.5}), rows[:2].mean() + 0.5 * rows[2])
    True
    """
    present = [s for s in mb.segments if s.name in weights and weights[s.name] != 0]
    if not present:
        return output.sum() * 0.0
    scale = _scale(mb)
    if not is_plain_cross_entropy(loss_fn):
        loss = None
        for s in present:
            if len(s):
                term = loss_fn(output[s.slice], mb.y[s.slice]) * (weights[s.name] * len(s) / s.total * scale)
                loss = term if loss is None else loss + term
        return output.sum() * 0.0 if loss is None else loss
    if len(present) == 1 and scale == 1 and present[0].total == len(present[0]):
        s, weight = present[0], weights[present[0].name]  # one segment: its plain mean
        loss = F.cross_entropy(output, mb.y) if len(s) == len(mb) else \
            F.cross_entropy(output[s.slice], mb.y[s.slice])
        return loss if weight == 1 else loss * weight
    key = (tuple((s.name, len(s), s.total) for s in mb.segments), tuple(sorted(weights.items())), scale,
           output.dtype, output.device)
    row_weights = _WEIGHTS.get(key)
    if row_weights is None:
        if len(_WEIGHTS) > 256:
            _WEIGHTS.clear()
        parts = [torch.full((len(s),), weights.get(s.name, 0.0) * scale / s.total if s.total else 0.0,
                            dtype=torch.float64) for s in mb.segments]
        row_weights = _WEIGHTS[key] = torch.cat(parts).to(output.device, output.dtype)
    return torch.dot(F.cross_entropy(output, mb.y, reduction="none"), row_weights)


def logit_mse(output: Tensor, mb: MiniBatch, name: str, column: str = "logits") -> Tensor:
    """Mean squared difference between ``output`` on segment ``name`` and the logits
    stored with those rows (the store's column ``column``), over the entries that hold
    a stored value: NaN marks a logit never stored (a class the head did not have when
    the sample was stored, or a sample stored without a forward pass), which is not
    compared. The mean is over the compared entries (the authors' MSE when all are).

    >>> out = torch.tensor([[2.0, 2.0, 9.0], [0.0, 1.0, 9.0]])
    >>> mb = MiniBatch(torch.zeros(0, 1), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    >>> mb = mb.append(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long),
    ...                name="replay", columns={"logits": torch.tensor([[1.0, 2.0, float("nan")], [0.0, 0.0, float("nan")]])})
    >>> logit_mse(out, mb, "replay").item()   # (1 + 0 + 0 + 1) / 4
    0.5
    """
    segment, scale = mb.segment(name), _scale(mb)
    current = output[segment.slice].float()
    stored = segment.columns[column].to(current.device, torch.float32)
    whole = segment.total == len(segment) and scale == 1
    complete = getattr(segment.columns, "complete", None)
    if complete is not None and complete(column) and stored.shape[1] == current.shape[1]:
        # Every row holds all its logits (the store knows it on the host): the plain MSE.
        if whole:
            return F.mse_loss(current, stored)
        return F.mse_loss(current, stored, reduction="sum") * (scale / max(segment.total * stored.shape[1], 1))
    width = min(current.shape[1], stored.shape[1])
    current, stored = current[:, :width], stored[:, :width]
    valid = stored == stored  # False where NaN
    squared = torch.where(valid, current - stored, 0.0).square().sum()
    count = valid.sum()
    if mb.is_slice:  # a rank's share of the global mean: over every rank's compared entries
        return squared * _scale(mb) / global_sum(count, mb).clamp(min=1)
    return squared / count.clamp(min=1)


def hinge_mean(bad: Tensor, good: Tensor, margin: float, mb: MiniBatch) -> Tensor:
    """The mean of the positive ``bad + margin - good`` over the rows where it is positive,
    0 if none is (X-DER's margin constraints); the rows are rows of ``mb``.

    >>> mb = MiniBatch(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    >>> hinge_mean(torch.tensor([1.0, 0.0, 2.0]), torch.tensor([1.0, 1.0, 1.0]), 0.5, mb).item()  # (0.5 + 1.5) / 2
    1.0
    """
    violation = F.relu(bad + margin - good)
    count = (violation > 0).sum()
    if mb.is_slice:  # a rank's share of the mean over every rank's violating rows
        return violation.sum() * _scale(mb) / global_sum(count, mb).clamp(min=1)
    return violation.sum() / count.clamp(min=1)


def global_sum(value: Tensor, mb: MiniBatch) -> Tensor:
    """``value`` summed over the ranks when ``mb`` is a rank's slice of a global batch (every
    rank computes the same loss terms of a step, so every rank calls it), else ``value``.
    For the denominators of means over rows that only the model's output selects."""
    return idist.all_reduce(value) if mb.is_slice else value


def joint_weights(mb: MiniBatch, names) -> Dict[str, float]:
    """Segment weights under which :func:`cross_entropy` is one mean over the rows of the
    named segments together (the cross-entropy of their union, as a method that trains on
    ``B ∪ M`` writes it), each segment weighted by its share of those rows in the global batch.

    >>> mb = MiniBatch(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    >>> mb = mb.append(torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long),
    ...                name="replay")
    >>> joint_weights(mb, ("stream", "replay"))
    {'stream': 0.75, 'replay': 0.25}
    """
    present = [s for s in mb.segments if s.name in names]
    total = sum(s.total for s in present)
    return {s.name: s.total / total for s in present} if total else {}


def segment_mse(output: Tensor, targets: Tensor, mb: MiniBatch, name: str) -> Tensor:
    """The mean squared difference between ``output``'s rows of segment ``name`` and
    ``targets`` (one row each), over every entry of the segment (``nn.MSELoss()``'s mean on
    one process; a rank's share of it in a distributed run).

    >>> mb = MiniBatch(torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))
    >>> mb = mb.append(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long),
    ...                name="replay")
    >>> out = torch.tensor([[9.0, 9.0], [1.0, 2.0], [0.0, 1.0]])
    >>> segment_mse(out, torch.tensor([[1.0, 0.0], [0.0, 0.0]]), mb, "replay").item()   # (0 + 4 + 0 + 1) / 4
    1.25
    """
    segment = mb.segment(name)
    rows = (output[segment.slice].float() - targets.to(output.device, torch.float32)).square().mean(dim=1)
    return segment_mean(rows, mb, name)
