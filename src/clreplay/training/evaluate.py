"""The evaluation loop of a strategy: accuracy on each experience of a stream."""

from __future__ import annotations

from typing import Dict, Iterable

import torch

from clreplay.data.batching import DatasetBatchSource
from clreplay.data.experience import Experience
from clreplay.data.minibatch import MiniBatch


def check_experience(value) -> Experience:
    if not isinstance(value, Experience):
        raise TypeError(f"experience must be an Experience, got {type(value).__name__}")
    return value


def indexed(device: torch.device) -> torch.device:
    """``cuda`` as the current CUDA device (``cuda:0``): tensors report an index, and
    ``torch.device("cuda") != torch.device("cuda:0")`` would make every batch look foreign."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


@torch.no_grad()
def evaluate(strategy, stream: Experience | Iterable[Experience], **kwargs) -> Dict[int, float]:
    """``strategy.eval(stream)``: see :meth:`~clreplay.training.BaseStrategy.eval`."""
    if isinstance(stream, Experience):
        stream = [stream]
    elif not hasattr(stream, "__iter__"):
        raise TypeError(
            f"stream must be an Experience or an iterable of them, got {type(stream).__name__}"
        )
    stream = [check_experience(e) for e in stream]
    saved = (strategy.experience, strategy._batch_source, strategy.model.training)
    saved_mb = (strategy.mb, strategy.mb_output, strategy.loss)
    strategy.model.eval()
    results: Dict[int, float] = {}
    strategy._fire("before_eval", **kwargs)
    for experience in stream:
        strategy.experience = experience
        strategy._fire("before_eval_exp", **kwargs)
        correct = torch.zeros((), dtype=torch.long, device=strategy.device)
        data = experience.dataset
        if strategy._parallel is not None:  # each rank evaluates a share of the batches
            data = strategy._parallel.eval_shard(data, strategy.eval_mb_size)
        source = DatasetBatchSource(data, strategy.eval_mb_size, shuffle=False)
        device = indexed(strategy.device)
        # Inlined like training_step: a hook no plugin overrides is an empty list.
        before, after = strategy._hooks["before_eval_iteration"], strategy._hooks["after_eval_iteration"]
        for x, y, t in source:
            if x.device != device or y.device != device or t.device != device:
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                t = t.to(device, non_blocking=True)
            strategy.mb = MiniBatch(x, y, t)
            for hook in before:
                hook(strategy, **kwargs)
            with strategy.acceleration.autocast():
                strategy.mb_output = strategy.predict(strategy.mb.x)
            correct += (strategy.mb_output.argmax(dim=1) == strategy.mb.y).sum()
            for hook in after:
                hook(strategy, **kwargs)
        if strategy._parallel is not None:
            correct = strategy._parallel.sum(correct)
        n = len(experience.dataset)
        results[experience.current_experience] = correct.item() / n if n else float("nan")
        strategy._fire("after_eval_exp", **kwargs)
    strategy._fire("after_eval", **kwargs)
    strategy.experience, strategy._batch_source, training = saved
    strategy.mb, strategy.mb_output, strategy.loss = saved_mb
    strategy.model.train(training)
    return results
