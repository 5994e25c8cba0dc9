"""EvaluationPlugin: evaluates the test stream after every training experience and
records what a continual-learning report needs."""

from __future__ import annotations

import copy
import time
from typing import Dict, List, Optional, Sequence

import torch

from clreplay.benchmarks.experience import Experience
from clreplay.evaluation.loggers import Logger
from clreplay.evaluation.metrics import per_class_accuracy, summarize
from clreplay.training import distributed as idist
from clreplay.training.plugin import StrategyPlugin

# What state_dict() saves: everything gathered over finished experiences.
_STATE_KEYS = (
    "accuracy_matrix",
    "initial_accuracy",
    "class_accuracy",
    "train_loss",
    "epoch_losses",
    "train_samples",
    "train_time_s",
    "eval_time_s",
    "memory",
)


def memory_composition(strategy) -> dict:
    """The replay memory of the first plugin of ``strategy`` that has one (an
    ``ext_mem`` dict): ``size``, sample counts by ``groups`` (memory key) and by
    ``classes``, ``mem_size`` and ``policy``. Without a memory, size 0 and Nones.

    Keys are strings, so the dict survives a JSON round trip unchanged.
    """
    for plugin in strategy.plugins:
        ext_mem = getattr(plugin, "ext_mem", None)
        if isinstance(ext_mem, dict):
            break
    else:
        return {"size": 0, "groups": {}, "classes": {}, "mem_size": None, "policy": None}
    groups = {str(key): len(group) for key, group in ext_mem.items()}
    targets = [group.targets for group in ext_mem.values() if len(group)]
    classes: Dict[str, int] = {}
    if targets:
        labels, counts = torch.unique(torch.cat(targets), return_counts=True)
        classes = {str(c): n for c, n in zip(labels.tolist(), counts.tolist())}
    policy = getattr(plugin, "storage_policy", None)
    return {
        "size": sum(groups.values()),
        "groups": groups,
        "classes": classes,
        "mem_size": getattr(plugin, "mem_size", None),
        "policy": None if policy is None else type(policy).__name__,
    }


def _add_counts(total: Optional[torch.Tensor], counts: torch.Tensor) -> torch.Tensor:
    if total is None:
        return counts
    if len(total) < len(counts):  # a label beyond the outputs seen so far
        total, counts = counts, total
    total[: len(counts)] += counts
    return total


class EvaluationPlugin(StrategyPlugin):
    """Gathers the run's metrics and sends its events to ``loggers``.

    After each training experience ``i`` it evaluates ``test_stream`` and appends
    row ``i`` of the accuracy matrix ``R[i][j]`` (accuracy on ``test_stream[j]``),
    the per-class accuracy over the whole stream, the experience's training loss
    (mean over its iterations, and per epoch), its training samples, time and
    throughput (epochs only), the evaluation time and the replay memory's size and
    composition. With ``initial_eval`` (default) it also evaluates the model once
    before the first experience: the baseline of forward transfer.

    Pass it as ``evaluator=`` to a strategy: it runs last among the plugins, so the
    replay memory is already updated when it evaluates. Its ``state_dict`` holds all
    it gathered over finished experiences; loggers are not part of it. In a
    distributed run every rank has one (evaluation is collective: the ranks share
    the batches and sum the counts, so all of them record the same numbers); give
    loggers to rank 0's only.

    Example
    -------
    >>> from clreplay.benchmarks import split_digits
    >>> from clreplay.training import Naive
    >>> bench = split_digits(n_experiences=2)
    >>> model = torch.nn.Linear(64, 10)
    >>> evaluator = EvaluationPlugin(bench.test_stream)
    >>> strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1),
    ...                  train_mb_size=32, evaluator=evaluator, seed=0)
    >>> for experience in bench.train_stream:
    ...     strategy.train(experience)
    >>> len(evaluator.accuracy_matrix), len(evaluator.class_accuracy[-1])
    (2, 10)
    >>> sorted(evaluator.report())[:4]
    ['accuracy_matrix', 'average_accuracy', 'average_incremental_accuracy', 'backward_transfer']
    """

    def __init__(
        self,
        test_stream: Optional[Sequence[Experience]] = None,
        *,
        loggers: Optional[Sequence[Logger]] = None,
        initial_eval: bool = True,
    ) -> None:
        self.test_stream = list(test_stream) if test_stream is not None else None
        for i, experience in enumerate(self.test_stream or []):
            if not isinstance(experience, Experience):
                raise TypeError(
                    f"test_stream[{i}] must be an Experience, got {type(experience).__name__}"
                )
        self.loggers: List[Logger] = list(loggers or [])
        for i, logger in enumerate(self.loggers):
            if not isinstance(logger, Logger):
                raise TypeError(f"loggers[{i}] must be a Logger, got {type(logger).__name__}")
        if not isinstance(initial_eval, bool):
            raise TypeError(f"initial_eval must be a bool, got {type(initial_eval).__name__}")
        self.initial_eval = initial_eval
        self._live = [lg for lg in self.loggers if type(lg).on_iteration is not Logger.on_iteration]
        self._collect_classes = False
        self._class_correct = self._class_total = None
        #: The ``experience_end`` record of the last experience (None before the first).
        self.last_record: Optional[dict] = None
        self._reset_state()
        self._reset_experience()

    def _reset_state(self) -> None:
        self.accuracy_matrix: List[List[float]] = []
        self.initial_accuracy: Optional[List[float]] = None
        self.class_accuracy: List[List[Optional[float]]] = []
        self.train_loss: List[Optional[float]] = []
        self.epoch_losses: List[List[Optional[float]]] = []
        self.train_samples: List[int] = []
        self.train_time_s: List[float] = []
        self.eval_time_s: List[float] = []
        self.memory: List[dict] = []

    def _reset_experience(self) -> None:
        self._exp_loss_sum, self._exp_iterations, self._exp_samples = 0.0, 0, 0
        self._exp_seconds, self._exp_epoch_losses = 0.0, []

    # ----------------------------------------------------------------- events
    def emit(self, event: str, record: dict) -> None:
        """Send ``record`` to every logger (the run's start and end come from the caller)."""
        for logger in self.loggers:
            logger.log(event, record)

    def close(self) -> None:
        """Close every logger (their files are complete afterwards)."""
        for logger in self.loggers:
            logger.close()

    # ------------------------------------------------------------------ hooks
    def before_training_exp(self, strategy, **kwargs) -> None:
        if (self.test_stream and self.initial_eval and self.initial_accuracy is None
                and strategy.clock.train_exp_counter == 0):
            accuracies = strategy.eval(self.test_stream)
            self.initial_accuracy = [accuracies[e.current_experience] for e in self.test_stream]
        self._reset_experience()
        experience = strategy.experience
        self.emit("experience_start", {
            "experience": experience.current_experience,
            "classes": list(experience.classes_in_this_experience),
            "samples": len(experience.dataset),
            "epochs": strategy.train_epochs,
            "batches": len(strategy.batch_source),
        })

    def before_training_epoch(self, strategy, **kwargs) -> None:
        clock = strategy.clock
        self._epoch_start = (time.perf_counter(), clock.train_exp_iterations, clock.train_samples)
        self.emit("epoch_start", {
            "experience": strategy.experience.current_experience,
            "epoch": clock.train_exp_epochs + 1,
            "epochs": strategy.train_epochs,
            "batches": len(strategy.batch_source),
        })

    def after_training_iteration(self, strategy, **kwargs) -> None:
        for logger in self._live:
            logger.on_iteration(strategy)

    def after_training_epoch(self, strategy, **kwargs) -> None:
        loss_sum = strategy.epoch_loss_sum.item()  # one host sync per epoch (and the timing's)
        started, iterations0, samples0 = self._epoch_start
        seconds = time.perf_counter() - started
        clock = strategy.clock
        iterations = clock.train_exp_iterations - iterations0
        samples = clock.train_samples - samples0
        loss = loss_sum / iterations if iterations else None
        self._exp_loss_sum += loss_sum
        self._exp_iterations += iterations
        self._exp_samples += samples
        self._exp_seconds += seconds
        self._exp_epoch_losses.append(loss)
        self.emit("epoch_end", {
            "experience": strategy.experience.current_experience,
            "epoch": clock.train_exp_epochs,
            "epochs": strategy.train_epochs,
            "iterations": iterations,
            "samples": samples,
            "loss": loss,
            "seconds": seconds,
            "samples_per_s": samples / seconds if seconds > 0 else 0.0,
            "train_iterations": clock.train_iterations,
        })

    def after_training_exp(self, strategy, **kwargs) -> None:
        experience = strategy.experience
        self.memory.append(memory_composition(strategy))
        self.train_loss.append(
            self._exp_loss_sum / self._exp_iterations if self._exp_iterations else None
        )
        self.epoch_losses.append(list(self._exp_epoch_losses))
        self.train_samples.append(self._exp_samples)
        self.train_time_s.append(self._exp_seconds)
        if self.test_stream:
            started = time.perf_counter()
            self._collect_classes, self._class_correct, self._class_total = True, None, None
            try:
                accuracies = strategy.eval(self.test_stream)
            finally:
                self._collect_classes = False
            if idist.is_distributed(strategy):  # each rank counted its share of the batches
                self._class_correct = idist.sum_counts(self._class_correct)
                self._class_total = idist.sum_counts(self._class_total)
            self.accuracy_matrix.append([accuracies[e.current_experience] for e in self.test_stream])
            correct = [] if self._class_correct is None else self._class_correct.tolist()
            total = [] if self._class_total is None else self._class_total.tolist()
            self.class_accuracy.append(per_class_accuracy(correct, total))
            self.eval_time_s.append(time.perf_counter() - started)
        else:
            self.class_accuracy.append([])
            self.eval_time_s.append(0.0)
        self.last_record = self._experience_record(experience)
        self.emit("experience_end", self.last_record)

    def after_eval_iteration(self, strategy, **kwargs) -> None:
        if not self._collect_classes:
            return
        y, output = strategy.mb_y, strategy.mb_output
        hit = output.argmax(dim=1) == y
        n = output.shape[1]
        # Counted on the device; read once per evaluation.
        self._class_total = _add_counts(self._class_total, torch.bincount(y, minlength=n))
        self._class_correct = _add_counts(self._class_correct, torch.bincount(y[hit], minlength=n))

    # ---------------------------------------------------------------- results
    def _experience_record(self, experience: Experience) -> dict:
        i = len(self.train_loss) - 1
        row = self.accuracy_matrix[i] if self.accuracy_matrix else []
        seen = row[: len(self.accuracy_matrix)]
        seconds = self.train_time_s[i]
        return {
            "experience": experience.current_experience,
            "classes": list(experience.classes_in_this_experience),
            "accuracy": list(row),
            "accuracy_on_seen": sum(seen) / len(seen) if seen else None,
            "class_accuracy": list(self.class_accuracy[i]),
            "train_loss": self.train_loss[i],
            "train_samples": self.train_samples[i],
            "train_s": seconds,
            "samples_per_s": self.train_samples[i] / seconds if seconds > 0 else 0.0,
            "eval_s": self.eval_time_s[i],
            "memory": copy.deepcopy(self.memory[i]),
        }

    def report(self) -> dict:
        """All gathered so far, with the derived metrics (None where undefined)."""
        if self.accuracy_matrix:
            metrics = summarize(self.accuracy_matrix, baseline=self.initial_accuracy)
        else:
            metrics = dict.fromkeys(summarize([[0.0]]))
        last_memory = self.memory[-1] if self.memory else {}
        return {
            "accuracy_matrix": [list(row) for row in self.accuracy_matrix],
            **metrics,
            "initial_accuracy": None if self.initial_accuracy is None else list(self.initial_accuracy),
            "class_accuracy": [list(row) for row in self.class_accuracy],
            "train_loss": list(self.train_loss),
            "epoch_losses": [list(row) for row in self.epoch_losses],
            "timing": {
                "train_s": list(self.train_time_s),
                "eval_s": list(self.eval_time_s),
                "train_samples": list(self.train_samples),
                "samples_per_s": [n / s if s > 0 else 0.0
                                  for n, s in zip(self.train_samples, self.train_time_s)],
            },
            "memory": {
                "mem_size": last_memory.get("mem_size"),
                "policy": last_memory.get("policy"),
                "per_experience": copy.deepcopy(self.memory),
            },
        }

    # ------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        return copy.deepcopy({key: getattr(self, key) for key in _STATE_KEYS})

    def load_state_dict(self, state: dict) -> None:
        missing = [key for key in _STATE_KEYS if key not in state]
        unexpected = sorted(set(state) - set(_STATE_KEYS))
        if missing or unexpected:
            raise KeyError(
                f"evaluator state must have keys {list(_STATE_KEYS)}; "
                f"missing {missing}, unexpected {unexpected}"
            )
        for key in _STATE_KEYS:
            setattr(self, key, copy.deepcopy(state[key]))
        self._reset_experience()
