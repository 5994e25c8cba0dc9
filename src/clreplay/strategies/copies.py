"""Frozen copies of a network: the previous model of distillation methods, EMA models."""

from __future__ import annotations

import copy

from torch import nn


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode whose parameters take no gradient and whose modules
    have no hooks (those of the model, e.g. a method's feature tap, stay the model's).

    >>> old = frozen_copy(nn.Linear(2, 1))
    >>> old.training, old.weight.requires_grad
    (False, False)
    """
    copied = copy.deepcopy(model)
    copied.eval()
    for module in copied.modules():
        module._forward_hooks.clear()
        module._forward_pre_hooks.clear()
    for p in copied.parameters():
        p.requires_grad_(False)
    return copied
