"""EvaluationPlugin: evaluates the test stream after every training experience and
records what a continual-learning report needs."""

from __future__ import annotations

import copy
import time
from typing import Dict, List, Optional, Sequence

import torch

from clreplay import distributed as idist
from clreplay.data.experience import Experience
from clreplay.evaluation.compute import ForwardRows, compute_summary
from clreplay.evaluation.loggers import Logger
from clreplay.evaluation.memory import memory_composition
from clreplay.evaluation.metrics import per_class_accuracy, summarize
from clreplay.evaluation.named_metrics import NamedMetrics, split_evaluator_arguments
from clreplay.training.plugin import StrategyPlugin

# What state_dict() saves: everything gathered over finished experiences.
_STATE_KEYS = (
    "accuracy_matrix",
    "initial_accuracy",
    "task_accuracy_matrix",
    "initial_task_accuracy",
    "class_accuracy",
    "train_loss",
    "epoch_losses",
    "train_samples",
    "train_time_s",
    "eval_time_s",
    "memory",
    "forward_rows",
    "stream_samples",
)
#: State keys added since checkpoints were first saved: read as empty when absent.
_ADDED_KEYS = ("forward_rows", "stream_samples")


def _defined(accuracy: float) -> Optional[float]:
    """An experience's accuracy, None where undefined (``strategy.eval`` gives NaN for a
    test experience with no samples), so the matrix, the logs and results.json agree."""
    return None if accuracy != accuracy else accuracy


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
    row ``i`` of the accuracy matrix ``R[i][j]`` (accuracy on ``test_stream[j]``,
    class-incremental: the prediction is the argmax over all outputs), row ``i`` of
    the task-incremental matrix (the same with the logits restricted to the classes
    of ``test_stream[j]``, ``classes_in_this_experience``: the task is known at test
    time), the per-class accuracy over the whole stream, the experience's training loss
    (mean over its iterations, and per epoch), its training samples, time and
    throughput (epochs only), the evaluation time and the replay memory's size and
    composition. With ``initial_eval`` (default) it also evaluates the model once
    before the first experience: the baseline of forward transfer.

    Positional arguments may also be metric lists, as in an Avalanche script
    (``EvaluationPlugin(accuracy_metrics(experience=True, stream=True), loggers=[...])``):
    the evaluator then computes them under Avalanche's names whenever the strategy
    trains or evaluates (:mod:`~clreplay.evaluation.named_metrics`), sends them to its
    loggers (event ``metrics``), adds them to what ``strategy.eval`` returns (its
    ``.metrics``) and keeps them: :meth:`get_last_metrics`, :meth:`get_all_metrics`.
    Without a test stream it evaluates nothing by itself.

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
    >>> evaluator.accuracy_matrix[-1][0]            # class-IL: the first experience is forgotten
    0.0
    >>> evaluator.task_accuracy_matrix[-1][0] > 0.5  # task-IL: told the task, the model still knows
    True
    """

    def __init__(
        self,
        *streams_or_metrics,
        test_stream: Optional[Sequence[Experience]] = None,
        loggers: Optional[Sequence[Logger]] = None,
        initial_eval: bool = True,
        collect_all: bool = True,
    ) -> None:
        test_stream, requests = split_evaluator_arguments(streams_or_metrics, test_stream)
        if not isinstance(collect_all, bool):
            raise TypeError(f"collect_all must be a bool, got {type(collect_all).__name__}")
        #: The metrics requested by name (None without metric lists).
        self.named = NamedMetrics(requests, keep_history=collect_all) if requests else None
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
        self._collect_task = False
        self._task_correct: Dict[int, torch.Tensor] = {}
        self._task_classes: Dict[tuple, torch.Tensor] = {}
        #: The ``experience_end`` record of the last experience (None before the first).
        self.last_record: Optional[dict] = None
        self._epoch_start: Optional[tuple] = None
        self._in_experience = False  # between before_ and after_training_exp
        self._counter = ForwardRows()
        self._ranks = 1  # processes whose forward rows are summed (set at each experience)
        self._exp_stream = 0
        self._reset_state()
        self._reset_experience()

    def _reset_state(self) -> None:
        self.accuracy_matrix: List[List[float]] = []
        self.initial_accuracy: Optional[List[float]] = None
        self.task_accuracy_matrix: List[List[float]] = []
        self.initial_task_accuracy: Optional[List[float]] = None
        self.class_accuracy: List[List[Optional[float]]] = []
        self.train_loss: List[Optional[float]] = []
        self.epoch_losses: List[List[Optional[float]]] = []
        self.train_samples: List[int] = []
        self.train_time_s: List[float] = []
        self.eval_time_s: List[float] = []
        self.memory: List[dict] = []
        self.forward_rows: List[int] = []  # rows through the network and its copies, per experience
        self.stream_samples: List[int] = []  # stream rows trained on, per experience

    def _reset_experience(self) -> None:
        self._exp_loss_sum, self._exp_iterations, self._exp_samples = 0.0, 0, 0
        self._exp_seconds, self._exp_epoch_losses = 0.0, []

    # ----------------------------------------------------------------- events
    def emit(self, event: str, record: dict) -> None:
        """Send ``record`` to every logger (the run's start and end come from the caller)."""
        for logger in self.loggers:
            logger.log(event, record)

    def flush(self) -> None:
        """Push every logger's records to its files."""
        for logger in self.loggers:
            logger.flush()

    def close(self) -> None:
        """Close every logger (their files are complete afterwards)."""
        for logger in self.loggers:
            logger.close()

    # ------------------------------------------------------------------ hooks
    def before_training_exp(self, strategy, **kwargs) -> None:
        if (self.test_stream and self.initial_eval and self.initial_accuracy is None
                and strategy.clock.train_exp_counter == 0):
            accuracies, task_accuracies = self._evaluate(strategy)
            self.initial_accuracy = [_defined(accuracies[e.current_experience])
                                     for e in self.test_stream]
            self.initial_task_accuracy = task_accuracies
        self._reset_experience()
        if not strategy.resuming_experience:  # else the checkpoint holds the counts so far
            self._counter.rows, self._exp_stream = 0, 0
        self._in_experience = True
        self._ranks = idist.get_world_size() if idist.is_distributed(strategy) else 1
        self._counter.start(strategy.model)
        if self.named is not None:
            self.named.before_training_exp(strategy)
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
        if self.named is not None:
            self.named.before_training_epoch(strategy)

    def after_update(self, strategy, **kwargs) -> None:
        # Counted before after_training_iteration, where a checkpoint may save the count: the
        # step's rows were counted by then (its forward passes), so its samples must be too.
        self._exp_stream += strategy.mb.stream.total if "stream" in strategy.mb else 0

    def after_training_iteration(self, strategy, **kwargs) -> None:
        for logger in self._live:
            logger.on_iteration(strategy)
        if self.named is not None:
            self._emit_metrics("train", self.named.after_training_iteration(strategy), strategy)

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
        if self.named is not None:
            self._emit_metrics("train", self.named.after_training_epoch(strategy), strategy)

    def after_training_exp(self, strategy, **kwargs) -> None:
        self._in_experience = False
        self._counter.stop()
        self.forward_rows.append(self._counter.summed(self._ranks))
        self.stream_samples.append(self._exp_stream)
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
                accuracies, task_accuracies = self._evaluate(strategy)
            finally:
                self._collect_classes = False
            if idist.is_distributed(strategy):  # each rank counted its share of the batches
                self._class_correct = idist.sum_counts(self._class_correct)
                self._class_total = idist.sum_counts(self._class_total)
            self.accuracy_matrix.append([_defined(accuracies[e.current_experience])
                                         for e in self.test_stream])
            self.task_accuracy_matrix.append(task_accuracies)
            correct = [] if self._class_correct is None else self._class_correct.tolist()
            total = [] if self._class_total is None else self._class_total.tolist()
            self.class_accuracy.append(per_class_accuracy(correct, total))
            self.eval_time_s.append(time.perf_counter() - started)
        else:
            self.class_accuracy.append([])
            self.eval_time_s.append(0.0)
        self.last_record = self._experience_record(experience)
        self.emit("experience_end", self.last_record)

    def _evaluate(self, strategy):
        """Class-IL accuracies ``{experience: accuracy}`` from ``strategy.eval`` and the
        task-IL ones (a list over ``test_stream``) counted alongside."""
        self._collect_task, self._task_correct = True, {}
        try:
            accuracies = strategy.eval(self.test_stream)
        finally:
            self._collect_task = False
        # One tensor in test_stream's order (zero where a rank counted nothing, e.g. its
        # share of an experience was empty): one read, and in a distributed run one
        # collective, every rank passing the same shape, summing the ranks' shares.
        zero = torch.zeros((), dtype=torch.long, device=strategy.device)
        counts = torch.stack([self._task_correct.get(e.current_experience, zero).to(zero)
                              for e in self.test_stream])
        if idist.is_distributed(strategy):
            counts = idist.all_reduce(counts)
        task = []
        for e, correct in zip(self.test_stream, counts.tolist()):
            n = len(e.dataset)
            task.append(correct / n if n else None)  # None: undefined
        return accuracies, task

    def _classes_of(self, experience: Experience, device: torch.device) -> torch.Tensor:
        key = (experience.current_experience, tuple(experience.classes_in_this_experience), device)
        classes = self._task_classes.get(key)
        if classes is None:
            classes = torch.tensor(experience.classes_in_this_experience, dtype=torch.long,
                                   device=device)
            self._task_classes[key] = classes
        return classes

    # ---------------------------------------- metrics requested by name (Avalanche's)
    def before_eval(self, strategy, **kwargs) -> None:
        self._counter.stop()  # evaluation is not training's cost
        if self.named is not None:
            self.named.before_eval(strategy)

    def before_eval_exp(self, strategy, **kwargs) -> None:
        if self.named is not None:
            self.named.before_eval_exp(strategy)

    def after_eval_exp(self, strategy, **kwargs) -> None:
        if self.named is not None:  # over several processes each rank counted its share
            self.named.after_eval_exp(strategy, sum_over_ranks=idist.all_reduce
                                      if idist.is_distributed(strategy) else None)

    def after_eval(self, strategy, **kwargs) -> None:
        if self._in_experience:  # an evaluation inside training (anytime accuracy)
            self._counter.start(strategy.model)
        if self.named is not None:
            values = self.named.after_eval(strategy)
            if getattr(strategy, "eval_results", None) is not None:
                strategy.eval_results.metrics.update(values)
            self._emit_metrics("eval", values, strategy)

    def _emit_metrics(self, phase: str, values: dict, strategy) -> None:
        if values:
            self.emit("metrics", {"phase": phase, "step": strategy.clock.train_iterations,
                                  "values": dict(values)})

    def get_last_metrics(self) -> dict:
        """The last value of every metric requested by name (``{}`` without metric lists)."""
        return {} if self.named is None else self.named.last()

    def get_all_metrics(self) -> dict:
        """Every value of every metric requested by name: ``{name: ([x, ...], [value, ...])}``,
        ``x`` the training iterations done when it was computed (``{}`` with
        ``collect_all=False`` or without metric lists)."""
        return {} if self.named is None else self.named.history()

    def after_eval_iteration(self, strategy, **kwargs) -> None:
        if self.named is not None:
            self.named.after_eval_iteration(strategy)
        if self._collect_task:
            y, output, experience = strategy.mb_y, strategy.mb_output, strategy.experience
            classes = self._classes_of(experience, output.device)
            # Task-IL: the argmax over the logits of the experience's own classes only.
            predicted = classes[output.index_select(1, classes).argmax(dim=1)]
            hits = (predicted == y).sum()
            index = experience.current_experience
            self._task_correct[index] = hits + self._task_correct[index] if index in self._task_correct else hits
        if not self._collect_classes:
            return
        y, output = strategy.mb_y, strategy.mb_output
        hit = output.argmax(dim=1) == y
        # Counted on the device; read once per evaluation. Both counts get the same length,
        # even for a label beyond the model's outputs that is never predicted.
        total = torch.bincount(y, minlength=output.shape[1])
        self._class_total = _add_counts(self._class_total, total)
        self._class_correct = _add_counts(self._class_correct,
                                          torch.bincount(y[hit], minlength=len(total)))

    # ---------------------------------------------------------------- results
    def _experience_record(self, experience: Experience) -> dict:
        i = len(self.train_loss) - 1
        row = self.accuracy_matrix[i] if self.accuracy_matrix else []
        seen = [a for a in row[: len(self.accuracy_matrix)] if a is not None]
        task_row = self.task_accuracy_matrix[i] if self.task_accuracy_matrix else []
        task_seen = [a for a in task_row[: len(self.task_accuracy_matrix)] if a is not None]
        seconds = self.train_time_s[i]
        return {
            "experience": experience.current_experience,
            "classes": list(experience.classes_in_this_experience),
            "accuracy": list(row),
            "accuracy_on_seen": sum(seen) / len(seen) if seen else None,  # None: undefined
            "task_accuracy": list(task_row),
            "task_accuracy_on_seen": sum(task_seen) / len(task_seen) if task_seen else None,
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
        if self.task_accuracy_matrix:
            task = summarize(self.task_accuracy_matrix, baseline=self.initial_task_accuracy)
        else:
            task = dict.fromkeys(summarize([[0.0]]))
        last_memory = self.memory[-1] if self.memory else {}
        return {
            "accuracy_matrix": [list(row) for row in self.accuracy_matrix],
            **metrics,
            "initial_accuracy": None if self.initial_accuracy is None else list(self.initial_accuracy),
            "task_accuracy_matrix": [list(row) for row in self.task_accuracy_matrix],
            **{f"task_{key}": value for key, value in task.items()},
            "initial_task_accuracy": (None if self.initial_task_accuracy is None
                                      else list(self.initial_task_accuracy)),
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
            "compute": compute_summary(self.forward_rows, self.stream_samples, len(self.train_samples)),
            "memory": {
                "mem_size": last_memory.get("mem_size"),
                "policy": last_memory.get("policy"),
                "per_experience": copy.deepcopy(self.memory),
            },
        }

    # ------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        """The evaluator's state. Inside an experience of a run over several processes,
        every rank calls it (as the checkpoint does): the forward rows so far are summed
        over the ranks."""
        state = copy.deepcopy({key: getattr(self, key) for key in _STATE_KEYS})
        # Inside an experience (a checkpoint at the end of an iteration): its sums so far.
        state["in_progress"] = {
            "experience": [self._exp_loss_sum, self._exp_iterations, self._exp_samples,
                           self._exp_seconds, list(self._exp_epoch_losses)],
            "compute": [self._counter.summed(self._ranks), self._exp_stream],
            "epoch_start": None if self._epoch_start is None else list(self._epoch_start[1:]),
        } if self._in_experience else None
        if self.named is not None:  # what the metrics requested by name gathered
            state["named_metrics"] = self.named.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        state = {**{key: [] for key in _ADDED_KEYS}, **state}
        optional = ("named_metrics",) if self.named is not None else ()
        missing = [key for key in (*_STATE_KEYS, "in_progress", *optional) if key not in state]
        unexpected = sorted(set(state) - {*_STATE_KEYS, "in_progress", *optional})
        if missing or unexpected:
            raise KeyError(
                f"evaluator state must have keys {list(_STATE_KEYS)}; "
                f"missing {missing}, unexpected {unexpected}"
            )
        for key in _STATE_KEYS:
            value, current = copy.deepcopy(state[key]), getattr(self, key)
            if isinstance(current, list) and isinstance(value, list):
                current[:] = value  # in place: a list a caller holds stays this evaluator's
            else:
                setattr(self, key, value)
        if self.named is not None:
            self.named.load_state_dict(state["named_metrics"])
        self._reset_experience()
        progress = state["in_progress"]
        if progress is not None:
            (self._exp_loss_sum, self._exp_iterations, self._exp_samples, self._exp_seconds,
             losses) = progress["experience"]
            self._exp_epoch_losses = list(losses)
            rows, self._exp_stream = progress.get("compute", (0, 0))
            # Every rank's rows before the checkpoint, summed: rank 0 carries them on.
            self._counter.rows = rows if idist.get_rank() == 0 else 0
            if progress["epoch_start"] is not None:
                # Seconds before the checkpoint are lost with the process; counts are not.
                self._epoch_start = (time.perf_counter(), *progress["epoch_start"])
