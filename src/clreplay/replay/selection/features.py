"""One way to run a model over a dataset for selection: features of a layer, or outputs."""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor, nn

from clreplay import distributed as idist
from clreplay.data.dataset import ClassificationDataset


def strategy_settings(strategy) -> Tuple[torch.device, Optional[int], bool]:
    """What a selection reads from the strategy besides its model, checked: ``device`` (the
    CPU when the object has none), ``eval_mb_size`` (one batch when it has none, or None) and
    whether it runs over several processes. An attribute of the wrong kind, such as a
    ``MagicMock``'s, is a TypeError naming it, so a policy can be driven by hand with any
    object that holds what it reads.

    >>> from types import SimpleNamespace
    >>> strategy_settings(SimpleNamespace(device="cpu", eval_mb_size=64))
    (device(type='cpu'), 64, False)
    >>> strategy_settings(SimpleNamespace(eval_mb_size="64"))
    Traceback (most recent call last):
    ...
    TypeError: strategy.eval_mb_size must be a positive int or None (the batch size of the selection's forward passes), got str '64'
    """
    device = getattr(strategy, "device", "cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"strategy.device must be a torch.device or a str (where the selection runs "
                        f"the model), got {_described(device)}")
    batch_size = getattr(strategy, "eval_mb_size", None)
    if batch_size is not None and (type(batch_size) is not int or batch_size < 1):
        raise TypeError(f"strategy.eval_mb_size must be a positive int or None (the batch size of the "
                        f"selection's forward passes), got {_described(batch_size)}")
    return torch.device(device), batch_size, idist.is_distributed(strategy)


def _described(value) -> str:
    """``str '64'`` for a plain value; the type alone for an object (a mock's repr is noise)."""
    plain = isinstance(value, (bool, int, float, str)) or value is None
    return f"{type(value).__name__} {value!r}" if plain else type(value).__name__


@torch.no_grad()
def extract_features(
    model: nn.Module,
    data: ClassificationDataset,
    *,
    layer_name: Optional[str] = None,
    forward: Optional[Callable[[Tensor], Tensor]] = None,
    device="cpu",
    batch_size: Optional[int] = None,
    gather: bool = False,
) -> Tensor:
    """One row per sample of ``data``: the flattened output of ``model``'s submodule
    ``layer_name`` (``""``: the model itself), or with ``layer_name=None`` of
    ``forward(x)`` (default ``model(x)``; e.g. a strategy's ``predict``).

    Runs in eval mode without gradients, in batches of ``batch_size`` (all at once
    if None) on ``device``, and restores the model's mode. Every feature-based
    selection strategy, uncertainty selection and iCaRL's class means use it.

    With ``gather`` in a process group (a distributed run), each rank computes the
    rows of its share of the batches and the rows are all-gathered: every rank gets
    the same bits, so no rank's floating-point quirks can make it select other
    samples (see :func:`clreplay.distributed.map_batches`).

    >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    >>> data = ClassificationDataset(torch.ones(5, 2), torch.zeros(5, dtype=torch.long))
    >>> extract_features(model, data, layer_name="1", batch_size=2).shape
    torch.Size([5, 3])
    """
    if not isinstance(data, ClassificationDataset):
        raise TypeError(f"data must be a ClassificationDataset, got {type(data).__name__}")
    device = torch.device(device)
    batch_size = batch_size or max(len(data), 1)
    captured: List[Tensor] = []
    handle = None
    if layer_name is not None:
        layer = dict(model.named_modules())[layer_name]
        handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    run = forward if forward is not None else model

    def rows(start: int, stop: int) -> Tensor:
        x, _, _ = data.get_batch(torch.arange(start, stop))
        captured.clear()
        out = run(x.to(device))
        return (captured[-1] if handle is not None else out).flatten(start_dim=1)

    if len(data) == 0:
        if handle is not None:
            handle.remove()
        return torch.empty(0, 0, device=device)
    was_training = model.training
    model.eval()
    try:
        return idist.map_batches(rows, len(data), batch_size, gather=gather).to(device)
    finally:
        if handle is not None:
            handle.remove()
        model.train(was_training)
