"""Metrics requested by name, as an Avalanche script asks for them.

``EvaluationPlugin(accuracy_metrics(experience=True, stream=True), loss_metrics(epoch=True),
forgetting_metrics(experience=True, stream=True), loggers=[...])`` computes what the lists
request, under Avalanche's (0.1-0.3) names (``Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp000``,
...), and the evaluator exposes them as ``get_last_metrics()`` / ``get_all_metrics()`` and in
``strategy.eval(stream).metrics``.

=================================== =========================================================
request                             metric (phase)
=================================== =========================================================
``accuracy_metrics(minibatch=)``    ``Top1_Acc_MB`` (train): accuracy of each training batch
``accuracy_metrics(epoch=)``        ``Top1_Acc_Epoch`` (train): over the epoch's batches
``accuracy_metrics(epoch_running=)`` ``Top1_RunningAcc_Epoch`` (train): the epoch so far
``accuracy_metrics(experience=)``   ``Top1_Acc_Exp`` (eval): on each evaluated experience
``accuracy_metrics(stream=)``       ``Top1_Acc_Stream`` (eval): over every sample evaluated
``accuracy_metrics(trained_experience=)`` ``Accuracy_On_Trained_Experiences`` (eval): over the
                                    samples of the experiences trained on so far
``loss_metrics(...)``               ``Loss_MB``, ``Loss_Epoch``, ``RunningLoss_Epoch``,
                                    ``Loss_Exp``, ``Loss_Stream``: the mean loss per sample
                                    (``strategy.loss_fn`` on the outputs, in evaluation)
``forgetting_metrics(experience=)`` ``ExperienceForgetting`` (eval): an experience's accuracy
                                    at the first evaluation after training on it, minus its
                                    accuracy now; for experiences trained before the last one
``forgetting_metrics(stream=)``     ``StreamForgetting`` (eval): their mean (0 without any)
``bwt_metrics(...)``                ``ExperienceBWT``, ``StreamBWT``: minus the forgetting
=================================== =========================================================

Batches are counted on the device and read once per epoch (``Top1_Acc_MB``, ``Loss_MB`` and
the running values: once per iteration, only when requested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch

from clreplay.data.experience import Experience
from clreplay.training.eval_results import metric_name

#: What each kind of metric can be requested at, and its Avalanche name there.
_NAMES = {
    "accuracy": {"minibatch": "Top1_Acc_MB", "epoch": "Top1_Acc_Epoch",
                 "epoch_running": "Top1_RunningAcc_Epoch", "experience": "Top1_Acc_Exp",
                 "stream": "Top1_Acc_Stream", "trained_experience": "Accuracy_On_Trained_Experiences"},
    "loss": {"minibatch": "Loss_MB", "epoch": "Loss_Epoch", "epoch_running": "RunningLoss_Epoch",
             "experience": "Loss_Exp", "stream": "Loss_Stream"},
    "forgetting": {"experience": "ExperienceForgetting", "stream": "StreamForgetting"},
    "bwt": {"experience": "ExperienceBWT", "stream": "StreamBWT"},
}
_TRAIN_LEVELS = ("minibatch", "epoch", "epoch_running")


@dataclass(frozen=True)
class MetricRequest:
    """One metric an :class:`~clreplay.evaluation.EvaluationPlugin` is asked to compute:
    its ``kind`` (accuracy, loss, forgetting, bwt) at one ``level``."""

    kind: str
    level: str

    @property
    def name(self) -> str:
        """Avalanche's name of the metric (``Top1_Acc_Exp``)."""
        return _NAMES[self.kind][self.level]


def _requests(kind: str, flags: Dict[str, bool]) -> List[MetricRequest]:
    for level, value in flags.items():
        if not isinstance(value, bool):
            raise TypeError(f"{level} must be a bool, got {value!r}")
    return [MetricRequest(kind, level) for level, value in flags.items() if value]


def accuracy_metrics(*, minibatch: bool = False, epoch: bool = False, epoch_running: bool = False,
                     experience: bool = False, stream: bool = False,
                     trained_experience: bool = False) -> List[MetricRequest]:
    """Accuracy at the levels asked for (Avalanche's ``accuracy_metrics``).

    >>> [r.name for r in accuracy_metrics(epoch=True, experience=True, stream=True)]
    ['Top1_Acc_Epoch', 'Top1_Acc_Exp', 'Top1_Acc_Stream']
    """
    return _requests("accuracy", dict(minibatch=minibatch, epoch=epoch, epoch_running=epoch_running,
                                      experience=experience, stream=stream,
                                      trained_experience=trained_experience))


def loss_metrics(*, minibatch: bool = False, epoch: bool = False, epoch_running: bool = False,
                 experience: bool = False, stream: bool = False) -> List[MetricRequest]:
    """The mean loss per sample at the levels asked for (Avalanche's ``loss_metrics``)."""
    return _requests("loss", dict(minibatch=minibatch, epoch=epoch, epoch_running=epoch_running,
                                  experience=experience, stream=stream))


def forgetting_metrics(*, experience: bool = False, stream: bool = False) -> List[MetricRequest]:
    """Forgetting per experience and its mean (Avalanche's ``forgetting_metrics``)."""
    return _requests("forgetting", dict(experience=experience, stream=stream))


def bwt_metrics(*, experience: bool = False, stream: bool = False) -> List[MetricRequest]:
    """Backward transfer, minus the forgetting (Avalanche's ``bwt_metrics``)."""
    return _requests("bwt", dict(experience=experience, stream=stream))


def flatten_requests(items) -> List[MetricRequest]:
    """The requests in ``items``: requests, or (nested) lists of them; anything else is a
    TypeError naming it."""
    found: List[MetricRequest] = []
    for item in items:
        if isinstance(item, MetricRequest):
            found.append(item)
        elif isinstance(item, (list, tuple)):
            found += flatten_requests(item)
        else:
            raise TypeError(f"metrics must be accuracy_metrics(...), loss_metrics(...), "
                            f"forgetting_metrics(...) or bwt_metrics(...) lists, got {type(item).__name__}")
    return found


def split_evaluator_arguments(arguments, test_stream) -> Tuple[Optional[list], List[MetricRequest]]:
    """The test stream and the metric requests among an evaluator's positional arguments:
    a sequence of experiences is the stream (as the first argument always was), anything
    else must be metric lists."""
    requests, streams = [], []
    for argument in arguments:
        is_stream = isinstance(argument, (list, tuple)) and argument and isinstance(argument[0], Experience)
        (streams if is_stream else requests).append(argument)
    if len(streams) + (test_stream is not None) > 1:
        raise TypeError("EvaluationPlugin takes one test stream, got "
                        f"{len(streams) + (test_stream is not None)}")
    return (streams[0] if streams else test_stream), flatten_requests(requests)


class NamedMetrics:
    """Computes the requested metrics from the strategy's hooks (the evaluator forwards them)
    and keeps every value: :meth:`last` and :meth:`history` (x: training iterations)."""

    def __init__(self, requests: List[MetricRequest], *, keep_history: bool = True) -> None:
        self.requests = list(dict.fromkeys(requests))  # in order, without repeats
        self.keep_history = keep_history
        wanted = {(r.kind, r.level) for r in self.requests}
        self._wanted = wanted
        self._train = any(level in _TRAIN_LEVELS for _, level in wanted)
        self._eval_loss = ("loss", "experience") in wanted or ("loss", "stream") in wanted
        self._last: Dict[str, float] = {}
        self._history: Dict[str, Tuple[List[int], List[float]]] = {}
        self._initial: Dict[int, float] = {}  # experience -> accuracy after training on it
        self._trained: Optional[int] = None  # the experience trained on last
        self._trained_upto = -1  # the highest experience index trained on so far
        self._epoch = None  # the epoch's correct count, loss sum (on the device), samples

    def wants(self, kind: str, level: str) -> bool:
        return (kind, level) in self._wanted

    def _record(self, values: Dict[str, float], step: int) -> Dict[str, float]:
        self._last.update(values)
        if self.keep_history:
            for name, value in values.items():
                xs, ys = self._history.setdefault(name, ([], []))
                xs.append(step)
                ys.append(value)
        return values

    def last(self) -> Dict[str, float]:
        """The last value of every metric computed so far."""
        return dict(self._last)

    def history(self) -> Dict[str, Tuple[List[int], List[float]]]:
        """Every value of every metric: ``{name: ([x, ...], [value, ...])}``."""
        return {name: (list(xs), list(ys)) for name, (xs, ys) in self._history.items()}

    # --------------------------------------------------------------- training
    def before_training_exp(self, strategy) -> None:
        self._trained = strategy.experience.current_experience
        self._trained_upto = max(self._trained_upto, self._trained)

    def before_training_epoch(self, strategy) -> None:
        zero = torch.zeros((), dtype=torch.float64, device=strategy.device)
        self._epoch = [zero.clone(), zero.clone(), 0]  # correct, loss sum, samples

    def after_training_iteration(self, strategy) -> Dict[str, float]:
        """Accumulate the batch; the per-batch and running values when requested."""
        if not self._train:
            return {}
        if self._epoch is None:  # resumed inside an epoch: counted from the resumed iteration
            self.before_training_epoch(strategy)
        y, n = strategy.mb_y, len(strategy.mb_y)
        correct = (strategy.mb_output.argmax(dim=1) == y).sum()
        loss = strategy.loss.detach().double()
        self._epoch[0] += correct
        self._epoch[1] += loss * n
        self._epoch[2] += n
        values = {}
        task, stream = strategy.experience.task_label, strategy.experience.stream_name
        if self.wants("accuracy", "minibatch"):
            values[metric_name("Top1_Acc_MB", "train", stream, task)] = correct.item() / max(n, 1)
        if self.wants("loss", "minibatch"):
            values[metric_name("Loss_MB", "train", stream, task)] = loss.item()
        values.update(self._epoch_values(strategy, running=True))
        return self._record(values, strategy.clock.train_iterations)

    def after_training_epoch(self, strategy) -> Dict[str, float]:
        if not self._train or self._epoch is None:
            return {}
        values = self._epoch_values(strategy, running=False)
        self._epoch = None
        return self._record(values, strategy.clock.train_iterations)

    def _epoch_values(self, strategy, *, running: bool) -> Dict[str, float]:
        level = "epoch_running" if running else "epoch"
        correct, loss, n = self._epoch
        task, stream = strategy.experience.task_label, strategy.experience.stream_name
        values = {}
        if self.wants("accuracy", level) and n:
            values[metric_name(_NAMES["accuracy"][level], "train", stream, task)] = correct.item() / n
        if self.wants("loss", level) and n:
            values[metric_name(_NAMES["loss"][level], "train", stream, task)] = loss.item() / n
        return values

    # ------------------------------------------------------------- evaluation
    def before_eval(self, strategy) -> None:
        self._experiences: List[tuple] = []  # (experience, task, stream, correct, loss, n)

    def before_eval_exp(self, strategy) -> None:
        zero = torch.zeros((), dtype=torch.float64, device=strategy.device)
        self._exp = [zero.clone(), zero.clone()]

    def after_eval_iteration(self, strategy) -> None:
        self._exp[0] += (strategy.mb_output.argmax(dim=1) == strategy.mb_y).sum()
        if self._eval_loss:
            self._exp[1] += strategy.loss_fn(strategy.mb_output, strategy.mb_y).double() * len(strategy.mb_y)

    def after_eval_exp(self, strategy, *, sum_over_ranks=None) -> None:
        experience = strategy.experience
        counts = torch.stack(self._exp)
        if sum_over_ranks is not None:
            counts = sum_over_ranks(counts)
        correct, loss = counts.tolist()
        self._experiences.append((experience.current_experience, experience.task_label,
                                  experience.stream_name, correct, loss, len(experience.dataset)))

    def after_eval(self, strategy) -> Dict[str, float]:
        """Every eval metric of the evaluation that ends (also added to ``strategy.eval_results``)."""
        values: Dict[str, float] = {}
        streams: Dict[tuple, list] = {}
        forgetting: List[float] = []
        stream_name = None
        for index, task, stream, correct, loss, n in self._experiences:
            stream_name = stream
            if not n:
                continue
            accuracy = correct / n
            if self.wants("accuracy", "experience"):
                values[metric_name("Top1_Acc_Exp", "eval", stream, task, index)] = accuracy
            if self.wants("loss", "experience"):
                values[metric_name("Loss_Exp", "eval", stream, task, index)] = loss / n
            total = streams.setdefault((stream, task), [0.0, 0.0, 0, 0.0, 0])
            total[0], total[1], total[2] = total[0] + correct, total[1] + loss, total[2] + n
            if index <= self._trained_upto:
                total[3], total[4] = total[3] + correct, total[4] + n
            # Avalanche's forgetting: the accuracy right after training on an experience is
            # its reference; an experience trained before the last one is compared with it.
            if index == self._trained:
                self._initial[index] = accuracy
            elif index in self._initial:
                forgetting.append(self._initial[index] - accuracy)
                for kind, name, sign in (("forgetting", "ExperienceForgetting", 1.0),
                                         ("bwt", "ExperienceBWT", -1.0)):
                    if self.wants(kind, "experience"):
                        values[metric_name(name, "eval", stream, task, index)] = \
                            sign * (self._initial[index] - accuracy)
        for (stream, task), (correct, loss, n, trained_correct, trained_n) in streams.items():
            if self.wants("accuracy", "stream"):
                values[metric_name("Top1_Acc_Stream", "eval", stream, task)] = correct / n
            if self.wants("loss", "stream"):
                values[metric_name("Loss_Stream", "eval", stream, task)] = loss / n
            if self.wants("accuracy", "trained_experience") and trained_n:
                values[metric_name("Accuracy_On_Trained_Experiences", "eval", stream, task)] = \
                    trained_correct / trained_n
        mean = sum(forgetting) / len(forgetting) if forgetting else 0.0
        if self.wants("forgetting", "stream"):
            values[metric_name("StreamForgetting", "eval", stream_name)] = mean
        if self.wants("bwt", "stream"):
            values[metric_name("StreamBWT", "eval", stream_name)] = -mean
        return self._record(values, strategy.clock.train_iterations)

    # ------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        return {"last": dict(self._last), "history": self.history(),
                "initial": {str(k): v for k, v in self._initial.items()},
                "trained": self._trained, "trained_upto": self._trained_upto}

    def load_state_dict(self, state: dict) -> None:
        self._last = dict(state["last"])
        self._history = {name: (list(xs), list(ys)) for name, (xs, ys) in state["history"].items()}
        self._initial = {int(k): v for k, v in state["initial"].items()}
        self._trained, self._trained_upto = state["trained"], state["trained_upto"]
