"""What training costs beyond the clock: the rows forwarded through the network per stream sample.

Rehearsal methods differ in how many forward passes a step takes: replayed rows, a
second memory draw (DER++), the EMA models' passes over the replayed rows (CLS-ER),
a virtual step and the candidates' passes (MIR), augmented views (SCR, OCM), the
previous model's (iCaRL, BiC, OCM). :class:`ForwardRows` counts, while it is on, the
rows of every outermost call of a module with the network's parameter shapes: the
network itself (also through :func:`torch.func.functional_call`) and its copies. Heads
and bias layers, far smaller, are not counted; a forward pass costs the same whether it
takes gradients or not.
"""

from __future__ import annotations

import weakref
from typing import Optional

import torch
from torch import nn

from clreplay import distributed as idist


class ForwardRows:
    """Counts the rows of the outermost forward calls of ``model`` and of modules with its
    parameter shapes (its copies), between :meth:`start` and :meth:`stop`.

    >>> import copy
    >>> model = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    >>> counter = ForwardRows()
    >>> counter.start(model)
    >>> _ = model(torch.zeros(5, 3)), nn.Linear(3, 4)(torch.zeros(7, 3)), copy.deepcopy(model)(torch.zeros(2, 3))
    >>> counter.stop()
    >>> _ = model(torch.zeros(5, 3))
    >>> counter.rows
    7
    """

    def __init__(self) -> None:
        self.rows = 0
        self._signature: Optional[tuple] = None
        self._matches: "weakref.WeakKeyDictionary[nn.Module, bool]" = weakref.WeakKeyDictionary()
        self._depth = 0
        self._handles: list = []

    @staticmethod
    def signature(module: nn.Module) -> tuple:
        return tuple(tuple(p.shape) for p in module.parameters())

    def start(self, model: nn.Module) -> None:
        """Count from now on (the network is ``model``)."""
        if self._handles:
            return
        signature = self.signature(model)
        if signature != self._signature:
            self._signature, self._matches = signature, weakref.WeakKeyDictionary()
        self._depth = 0
        self._handles = [torch.nn.modules.module.register_module_forward_pre_hook(self._enter),
                         torch.nn.modules.module.register_module_forward_hook(self._leave, always_call=True)]

    def summed(self, ranks: int) -> int:
        """The rows counted so far by ``ranks`` processes together (each counts its own: its
        slices, its copies' passes). Over several processes every rank calls it (the end of
        an experience, a checkpoint's state): one small all_reduce."""
        if ranks == 1:
            return self.rows
        return int(idist.all_reduce(torch.tensor([self.rows], dtype=torch.long)).item())

    def stop(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _enter(self, module: nn.Module, args) -> None:
        if self._depth == 0:
            match = self._matches.get(module)
            if match is None:
                match = self._matches[module] = bool(self._signature) and self.signature(module) == self._signature
            if match and args and isinstance(args[0], torch.Tensor) and args[0].dim() > 0:
                self.rows += int(args[0].shape[0])
        self._depth += 1

    def _leave(self, module: nn.Module, args, output) -> None:
        self._depth = max(self._depth - 1, 0)


def compute_summary(forward_rows: list, stream_samples: list, experiences: int) -> dict:
    """results.json's ``compute``: the rows forwarded and the stream samples trained on, per
    experience, and their ratio over the run (None: not counted, for a run resumed from a
    checkpoint saved before the count, whose lists are shorter than its experiences).

    >>> compute_summary([30, 50], [10, 10], 2)["forward_rows_per_sample"]
    4.0
    """
    counted = sum(stream_samples) and len(forward_rows) == experiences
    return {"forward_rows": list(forward_rows), "stream_samples": list(stream_samples),
            "forward_rows_per_sample": sum(forward_rows) / sum(stream_samples) if counted else None}
