"""Loggers: where the evaluator's events go (progress bar, text, JSON lines, CSV, TensorBoard,
Weights & Biases).

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
``metrics``          ``phase`` (``"train"`` or ``"eval"``), ``step`` (training iterations
                     so far), ``values`` (name -> value): metrics requested by name
                     (:mod:`~clreplay.evaluation.named_metrics`)
``run_end``          what the caller passes (the main job: the metrics and ``total_s``)
==================== =====================================================================

``experience`` in a record is the experience's index, counted from 0 as in
``strategy.eval``'s keys and the files (``events.jsonl``, the CSV tables' ``experience``
column and ``acc_exp0``, ``acc_exp1``, ...); what is written for people (the progress bar,
``log.txt``, printed tables, plots) numbers experiences from 1.

A logger implements :meth:`Logger.log`; a live display may also implement
:meth:`Logger.on_iteration`, called after every training iteration.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from clreplay.evaluation.loggers.base import EVENTS, Logger
from clreplay.evaluation.loggers.console import InteractiveLogger, ProgressBarLogger, TextLogger
from clreplay.evaluation.loggers.files import CSVLogger, JSONLinesLogger
from clreplay.evaluation.loggers.tensorboard import TensorBoardLogger, tensorboard_available
from clreplay.evaluation.loggers.weights_and_biases import WandBLogger, wandb_available

__all__ = ["EVENTS", "CSVLogger", "InteractiveLogger", "JSONLinesLogger", "Logger",
           "ProgressBarLogger", "TensorBoardLogger", "TextLogger", "WandBLogger", "default_loggers",
           "tensorboard_available", "wandb_available"]


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
