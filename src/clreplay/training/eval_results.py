"""EvalResults: what ``strategy.eval(stream)`` returns, and Avalanche's metric names."""

from __future__ import annotations

from typing import Dict, Iterable, Optional


def metric_name(metric: str, phase: str, stream: Optional[str], task: Optional[int] = None,
                experience: Optional[int] = None) -> str:
    """A metric's name as Avalanche (0.1-0.3) spells it:
    ``{metric}/{phase}_phase/{stream}_stream[/Task{task:03}][/Exp{experience:03}]``.

    >>> metric_name("Top1_Acc_Exp", "eval", "test", 0, 2)
    'Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp002'
    >>> metric_name("StreamForgetting", "eval", "test")
    'StreamForgetting/eval_phase/test_stream'
    """
    name = f"{metric}/{phase}_phase/{stream or ('test' if phase == 'eval' else 'train')}_stream"
    if task is not None:
        name += f"/Task{task:03d}"
    if experience is not None:
        name += f"/Exp{experience:03d}"
    return name


class EvalResults(dict):
    """``{experience index: accuracy}`` (NaN for an experience without samples), as
    ``strategy.eval`` has always returned, plus ``metrics``: the same evaluation under
    Avalanche's metric names, with whatever an evaluator built with metric lists
    (:func:`clreplay.evaluation.accuracy_metrics`, ...) added to it.

    A metric's name reads it too (``results["Top1_Acc_Stream/eval_phase/test_stream/Task000"]``),
    so an Avalanche script's ``strategy.eval(stream)[name]`` works unchanged; iterating,
    ``keys()``, ``len()`` and ``==`` see the experience indices only.

    >>> results = EvalResults.from_counts([(0, 0, "test", 9, 10), (1, 0, "test", 1, 10)])
    >>> results, results["Top1_Acc_Stream/eval_phase/test_stream/Task000"]
    ({0: 0.9, 1: 0.1}, 0.5)
    >>> sorted(results.metrics)
    ['Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp000', 'Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp001', 'Top1_Acc_Stream/eval_phase/test_stream/Task000']
    """

    def __init__(self, accuracies=(), metrics: Optional[Dict[str, float]] = None) -> None:
        super().__init__(accuracies)
        #: The evaluation under Avalanche's metric names (name -> value).
        self.metrics: Dict[str, float] = dict(metrics or {})

    @classmethod
    def from_counts(cls, counts: Iterable[tuple]) -> "EvalResults":
        """From ``(experience, task, stream name, correct, samples)`` per experience: each
        experience's accuracy (``Top1_Acc_Exp``) and, per task label, the accuracy over every
        sample of the stream (``Top1_Acc_Stream``, Avalanche's: weighted by samples)."""
        results, streams = cls(), {}
        for experience, task, stream, correct, n in counts:
            results[experience] = correct / n if n else float("nan")
            if n:
                results.metrics[metric_name("Top1_Acc_Exp", "eval", stream, task, experience)] = correct / n
            total = streams.setdefault((stream, task), [0, 0])
            total[0], total[1] = total[0] + correct, total[1] + n
        for (stream, task), (correct, n) in streams.items():
            if n:
                results.metrics[metric_name("Top1_Acc_Stream", "eval", stream, task)] = correct / n
        return results

    def __missing__(self, key):
        if isinstance(key, str):
            if key in self.metrics:
                return self.metrics[key]
            raise KeyError(f"{key!r}: no metric of that name in this evaluation; its metrics are "
                           f"{sorted(self.metrics)} (experience indices key the accuracies)")
        raise KeyError(key)

    def get(self, key, default=None):
        if key in self:
            return self[key]
        return self.metrics.get(key, default) if isinstance(key, str) else default

    def __repr__(self) -> str:
        return dict.__repr__(self)

    def __reduce__(self):
        return (type(self), (dict(self), self.metrics))
