"""Loggers: where the evaluator's events go (progress bar, text, JSON lines, CSV, TensorBoard).

An :class:`~clreplay.evaluation.evaluator.EvaluationPlugin` emits one record (a
dict of plain data) per event and hands it to each of its loggers:

==================== =====================================================================
event                record keys
==================== =====================================================================
``run_start``        what the caller passes (the main job: ``benchmark``, ``config``, ...)
``experience_start`` ``experience``, ``classes``, ``samples``, ``epochs``, ``batches``
``epoch_start``      ``experience``, ``epoch`` (from 1), ``epochs``, ``batches``
``epoch_end``        ``experience``, ``epoch``, ``epochs``, ``iterations``, ``samples``,
                     ``loss`` (mean over the epoch), ``seconds``, ``samples_per_s``,
                     ``train_iterations`` (since the strategy was created)
``experience_end``   ``experience``, ``classes``, ``accuracy`` (the matrix row),
                     ``accuracy_on_seen``, ``class_accuracy``, ``train_loss``,
                     ``train_samples``, ``train_s``, ``samples_per_s``, ``eval_s``, ``memory``
``run_end``          what the caller passes (the main job: the metrics and ``total_s``)
==================== =====================================================================

A logger implements :meth:`Logger.log`; a live display may also implement
:meth:`Logger.on_iteration`, called after every training iteration.
"""

from __future__ import annotations

import csv
import json
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO, List, Optional

from clreplay.evaluation.results import jsonable

EVENTS = ("run_start", "experience_start", "epoch_start", "epoch_end", "experience_end", "run_end")


class Logger(ABC):
    """Receives the evaluator's events; see the module docstring for the records."""

    @abstractmethod
    def log(self, event: str, record: dict) -> None:
        """Handle one event."""

    def on_iteration(self, strategy) -> None:
        """Called after every training iteration (only for loggers that override it)."""

    def flush(self) -> None:
        """Push what was logged to its files (a checkpoint records their sizes)."""

    def close(self) -> None:
        """Release files; the logger is not used afterwards."""


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _open(target, append: bool) -> tuple[IO[str], bool]:
    """A text stream for ``target`` (a path, or a stream used as is) and whether we own it."""
    if hasattr(target, "write"):
        return target, False
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Line buffering: each event reaches the file at once, for `tail -f`.
    return open(path, "a" if append else "w", buffering=1, encoding="utf-8"), True


class ProgressBarLogger(Logger):
    """A tqdm bar per epoch showing iterations, the epoch's mean loss and samples/s.

    ``disable=None`` (the default) shows the bar only when ``file`` (stderr by
    default) is a terminal, so logs of batch jobs hold no bar. The loss is read from
    the device at most every ``mininterval`` seconds.
    """

    def __init__(
        self,
        *,
        file: Optional[IO[str]] = None,
        disable: Optional[bool] = None,
        mininterval: float = 0.5,
        leave: bool = False,
    ) -> None:
        self.file, self.disable, self.mininterval, self.leave = file, disable, mininterval, leave
        self._bar = None

    def log(self, event: str, record: dict) -> None:
        if event == "epoch_start":
            from tqdm import tqdm

            self._close_bar()
            self._bar = tqdm(
                total=record["batches"],
                desc=f"experience {record['experience'] + 1} epoch {record['epoch']}/{record['epochs']}",
                unit="it",
                file=self.file,
                disable=self.disable,
                leave=self.leave,
                mininterval=self.mininterval,
                dynamic_ncols=True,
            )
            self._started = self._last = time.perf_counter()
            self._iterations = self._samples = 0
        elif event == "epoch_end" and self._bar is not None:
            self._bar.set_postfix_str(
                f"loss={_fmt(record['loss'], '.4f')}, {record['samples_per_s']:.0f} samples/s",
                refresh=False,
            )
            self._close_bar()

    def on_iteration(self, strategy) -> None:
        bar = self._bar
        if bar is None or bar.disable:
            return
        self._iterations += 1
        self._samples += len(strategy.mb_y)
        bar.update(1)
        now = time.perf_counter()
        if now - self._last >= self.mininterval:
            self._last = now
            # One host sync per refresh, not per iteration.
            loss = strategy.epoch_loss_sum.item() / self._iterations
            rate = self._samples / max(now - self._started, 1e-9)
            bar.set_postfix_str(f"loss={loss:.4f}, {rate:.0f} samples/s", refresh=False)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        self._close_bar()


class _StreamLogger(Logger):
    """A logger writing to one text stream: a path it opens (and closes) or a stream it is given."""

    def __init__(self, target, *, append: bool = False) -> None:
        self._stream, self._owned = _open(target, append)

    def flush(self) -> None:
        if not self._stream.closed:
            self._stream.flush()

    def close(self) -> None:
        if self._owned:
            self._stream.close()


class TextLogger(_StreamLogger):
    """A plain, human-readable log: one timestamped line per event (a path or a stream)."""

    def log(self, event: str, record: dict) -> None:
        line = self._format(event, record)
        if line is not None:
            self._stream.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {line}\n")

    @staticmethod
    def _format(event: str, r: dict) -> Optional[str]:
        if event == "experience_start":
            return (f"experience {r['experience'] + 1} starts: classes {r['classes']}, "
                    f"{r['samples']} samples, {r['batches']} batches x {r['epochs']} epochs")
        if event == "epoch_end":
            return (f"experience {r['experience'] + 1} epoch {r['epoch']}/{r['epochs']}: "
                    f"loss {_fmt(r['loss'], '.4f')}, {r['samples_per_s']:.0f} samples/s, "
                    f"{r['seconds']:.2f} s")
        if event == "experience_end":
            row = " ".join(_fmt(a, ".3f") for a in r["accuracy"])
            return (f"experience {r['experience'] + 1} done: accuracy [{row}], on seen "
                    f"{_fmt(r['accuracy_on_seen'], '.4f')}; train loss {_fmt(r['train_loss'], '.4f')}, "
                    f"{r['samples_per_s']:.0f} samples/s; memory {r['memory']['size']} samples")
        if event in ("run_start", "run_end"):
            return f"{event.replace('_', ' ')}: {json.dumps(jsonable(r), sort_keys=True)}"
        return None


class JSONLinesLogger(_StreamLogger):
    """Every event as one JSON object per line: ``{"event": ..., "time": ..., **record}``.

    Non-finite floats are written as ``null`` so that any JSON reader can parse it.
    """

    def log(self, event: str, record: dict) -> None:
        line = json.dumps(jsonable({"event": event, "time": time.time(), **record}), allow_nan=False)
        self._stream.write(line + "\n")


class CSVLogger(Logger):
    """Two tables in ``folder``: ``epochs.csv`` (one row per epoch) and
    ``experiences.csv`` (one row per experience, with the accuracy matrix row as
    ``acc_exp0``, ``acc_exp1``, ...). Missing values are empty cells."""

    EPOCH_COLUMNS = ["experience", "epoch", "iterations", "samples", "loss", "seconds",
                     "samples_per_s"]
    EXPERIENCE_COLUMNS = ["experience", "train_loss", "train_samples", "train_s",
                          "samples_per_s", "eval_s", "memory_size", "accuracy_on_seen"]

    def __init__(self, folder, *, append: bool = False) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._append = append
        self._files: dict = {}

    def _writer(self, name: str, columns: List[str]) -> csv.DictWriter:
        if name not in self._files:
            path = self.folder / name
            fresh = not (self._append and path.exists() and path.stat().st_size > 0)
            stream = open(path, "w" if fresh else "a", newline="", encoding="utf-8", buffering=1)
            writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore")
            if fresh:
                writer.writeheader()
            self._files[name] = (stream, writer)
        return self._files[name][1]

    def log(self, event: str, record: dict) -> None:
        if event == "epoch_end":
            self._writer("epochs.csv", self.EPOCH_COLUMNS).writerow(record)
        elif event == "experience_end":
            accuracy = {f"acc_exp{j}": a for j, a in enumerate(record["accuracy"])}
            columns = self.EXPERIENCE_COLUMNS + list(accuracy)
            row = {**record, **accuracy, "memory_size": record["memory"]["size"]}
            self._writer("experiences.csv", columns).writerow(row)

    def flush(self) -> None:
        for stream, _ in self._files.values():
            stream.flush()

    def close(self) -> None:
        for stream, _ in self._files.values():
            stream.close()
        self._files.clear()


class TensorBoardLogger(Logger):
    """Scalars for TensorBoard in ``log_dir``: ``train/loss`` and ``train/samples_per_s``
    per epoch (step: training iterations), ``eval/accuracy_on_seen``,
    ``eval/accuracy/exp<j>``, ``train/experience_loss`` and ``memory/size`` per
    experience (step: experience index).

    Needs the ``tensorboard`` package (``pip install 'clreplay[tensorboard]'``); it is
    imported here, not with clreplay.
    """

    def __init__(self, log_dir) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError(
                "TensorBoardLogger needs the tensorboard package, which is not installed; "
                "install it with: pip install 'clreplay[tensorboard]'"
            ) from err
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, event: str, record: dict) -> None:
        add = self.writer.add_scalar
        if event == "epoch_end":
            step = record["train_iterations"]
            if record["loss"] is not None:
                add("train/loss", record["loss"], step)
            add("train/samples_per_s", record["samples_per_s"], step)
        elif event == "experience_end":
            step = record["experience"]
            if record["accuracy_on_seen"] is not None:
                add("eval/accuracy_on_seen", record["accuracy_on_seen"], step)
            for j, accuracy in enumerate(record["accuracy"]):
                if accuracy is not None:  # undefined: a test experience with no samples
                    add(f"eval/accuracy/exp{j}", accuracy, step)
            if record["train_loss"] is not None:
                add("train/experience_loss", record["train_loss"], step)
            add("memory/size", record["memory"]["size"], step)
            self.writer.flush()

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def tensorboard_available() -> bool:
    """Whether the ``tensorboard`` package is installed (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def default_loggers(
    output: Optional[str | Path] = None,
    *,
    progress: bool = True,
    tensorboard: Optional[bool] = None,
    append: bool = False,
) -> List[Logger]:
    """The main job's loggers: a progress bar (shown on terminals only) and, with an
    ``output`` folder, ``log.txt``, ``events.jsonl``, ``epochs.csv``/``experiences.csv``
    and TensorBoard events under ``tensorboard/``.

    ``tensorboard=None`` logs to TensorBoard when the package is installed; True
    requires it (ImportError otherwise); False never does.
    """
    loggers: List[Logger] = [ProgressBarLogger()] if progress else []
    if output is None:
        if tensorboard:
            raise ValueError("tensorboard=True needs an output folder, got output=None")
        return loggers
    out = Path(output)
    loggers += [
        TextLogger(out / "log.txt", append=append),
        JSONLinesLogger(out / "events.jsonl", append=append),
        CSVLogger(out, append=append),
    ]
    if tensorboard or (tensorboard is None and tensorboard_available()):
        loggers.append(TensorBoardLogger(out / "tensorboard"))
    return loggers
