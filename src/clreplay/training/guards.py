"""Guards: plugins that stop a run whose numbers can no longer be right.

:class:`NonFiniteLossGuard` stops training when the loss (or a weight) becomes NaN
or infinite, instead of letting the run end "successfully" at chance accuracy.
It reads nothing from the device during an epoch: each iteration appends the
detached loss to a list (every :data:`CHUNK` losses are stacked into one tensor,
so the list stays short), and the end of the epoch checks them all, with the
weights, in one host sync. The error is raised inside ``strategy.train()``,
before the experience ends, so a checkpoint saved after the previous experience
is never overwritten with a diverged state.

>>> import torch
>>> from clreplay.benchmarks import Experience
>>> from clreplay.data import ClassificationDataset
>>> from clreplay.training import Naive
>>> x = torch.zeros(64, 4)
>>> x[:, 0] = 1e38                      # past what the data checks catch: finite, but huge
>>> data = ClassificationDataset(x, torch.arange(64) % 2)
>>> model = torch.nn.Linear(4, 2)
>>> with torch.no_grad():
...     _ = model.weight.fill_(0.5), model.bias.zero_()
>>> strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=16,
...                  train_epochs=2, plugins=[NonFiniteLossGuard()], seed=0)
>>> strategy.train(Experience(data, 0, [0, 1]))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
clreplay.training.guards.NonFiniteLossError: training loss became nan at experience 1, epoch 1 of 2, iteration 3 of 4; ...
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor

from clreplay.training.plugin import StrategyPlugin

#: Losses kept as separate tensors before they are stacked into one (no sync involved).
CHUNK = 1024


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss or weight; the run cannot go on."""


class NonFiniteLossGuard(StrategyPlugin):
    """Stop training, with an error naming experience, epoch and iteration, at the end of
    an epoch in which the loss or a weight of the model stopped being finite.

    The check costs one host sync per epoch and, per iteration, a ``detach`` and a list
    append. Put it before the evaluator (``plugins=``), so that a diverged epoch is
    neither logged as a normal one nor stored in a replay memory.
    """

    def __init__(self) -> None:
        self._chunks: List[Tensor] = []
        self._pending: List[Tensor] = []

    def before_training_epoch(self, strategy, **kwargs) -> None:
        self._chunks, self._pending = [], []

    def after_training_iteration(self, strategy, **kwargs) -> None:
        pending = self._pending
        pending.append(strategy.loss.detach())
        if len(pending) >= CHUNK:
            self._chunks.append(torch.stack(pending).reshape(-1))
            self._pending = []

    def after_training_epoch(self, strategy, **kwargs) -> None:
        if self._pending:
            self._chunks.append(torch.stack(self._pending).reshape(-1))
        losses = torch.cat(self._chunks) if self._chunks else None
        self._chunks, self._pending = [], []
        params = [p.detach() for p in strategy.model.parameters()]
        flags = [torch.isfinite(p).all() for p in params]
        if losses is not None:
            flags.append(torch.isfinite(losses).all())
        if not flags or bool(torch.stack(flags).all()):  # the epoch's one host sync
            return
        raise NonFiniteLossError(self._message(strategy, losses, params))

    @staticmethod
    def _message(strategy, losses: Optional[Tensor], params: List[Tensor]) -> str:
        clock = strategy.clock
        where = (f"experience {strategy.experience.current_experience + 1}, "
                 f"epoch {clock.train_exp_epochs} of {strategy.train_epochs}")
        bad = None if losses is None else torch.nonzero(~torch.isfinite(losses)).flatten()
        if bad is not None and len(bad):
            first = int(bad[0])
            what = (f"training loss became {losses[first].item()} at {where}, iteration "
                    f"{first + 1} of {len(losses)}")
        else:
            names = [name for name, p in strategy.model.named_parameters()
                     if not bool(torch.isfinite(p.detach()).all())]
            what = f"model weights {names} stopped being finite at {where} (the loss stayed finite)"
        return (
            f"{what}; training stopped before the experience ended, so no checkpoint holds "
            "this state (one saved after the previous experience is still valid): lower the "
            "learning rate, or check the data for extreme values"
        )
