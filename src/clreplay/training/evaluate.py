"""The evaluation loop of a strategy: accuracy on each experience of a stream."""

from __future__ import annotations

from typing import Iterable

import torch

from clreplay.data.batching import DatasetBatchSource
from clreplay.data.experience import Experience
from clreplay.data.minibatch import MiniBatch
from clreplay.training.eval_results import EvalResults
from clreplay.training.inputs import explain_input_dtype


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
def evaluate(strategy, stream: Experience | Iterable[Experience], **kwargs) -> EvalResults:
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
    counts = []  # (experience, task, stream name, correct, samples) of each experience
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
        hooks = strategy._hooks
        before, after = hooks["before_eval_iteration"], hooks["after_eval_iteration"]
        before_forward, after_forward = hooks["before_eval_forward"], hooks["after_eval_forward"]
        for x, y, t in source:
            if x.device != device or y.device != device or t.device != device:
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                t = t.to(device, non_blocking=True)
            strategy.mb = MiniBatch(x, y, t)
            for hook in before:
                hook(strategy, **kwargs)
            for hook in before_forward:
                hook(strategy, **kwargs)
            try:
                with strategy.acceleration.autocast():
                    strategy.mb_output = strategy.predict(strategy.mb.x)
            except RuntimeError as err:  # uint8 images into a float model: say how to fix it
                explain_input_dtype(err, strategy.mb.x)
                raise
            for hook in after_forward:
                hook(strategy, **kwargs)
            correct += (strategy.mb_output.argmax(dim=1) == strategy.mb.y).sum()
            for hook in after:
                hook(strategy, **kwargs)
        if strategy._parallel is not None:
            correct = strategy._parallel.sum(correct)
        counts.append((experience.current_experience, experience.task_label, experience.stream_name,
                       correct.item(), len(experience.dataset)))
        strategy._fire("after_eval_exp", **kwargs)
    results = strategy.eval_results = EvalResults.from_counts(counts)  # plugins may add metrics
    strategy._fire("after_eval", **kwargs)
    strategy.experience, strategy._batch_source, training = saved
    strategy.mb, strategy.mb_output, strategy.loss = saved_mb
    strategy.model.train(training)
    return results
