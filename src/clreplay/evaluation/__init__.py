"""Evaluation: the accuracy matrix and the metrics derived from it, loggers,
results files, text reports and plots."""

from clreplay.evaluation.anytime import AnytimeEvaluation
from clreplay.evaluation.compute import ForwardRows
from clreplay.evaluation.evaluator import EvaluationPlugin, memory_composition
from clreplay.evaluation.loggers import (
    CSVLogger,
    JSONLinesLogger,
    Logger,
    ProgressBarLogger,
    TensorBoardLogger,
    TextLogger,
    default_loggers,
)
from clreplay.evaluation.metrics import (
    accuracy_on_seen,
    average_accuracy,
    average_incremental_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
    per_class_accuracy,
    summarize,
)
from clreplay.evaluation.plots import (
    plot_accuracy_curves,
    plot_accuracy_matrix,
    plot_comparison,
    render_plots,
)
from clreplay.evaluation.reports import format_comparison, format_matrix, format_report
from clreplay.evaluation.results import read_results, write_results

__all__ = [
    "AnytimeEvaluation",
    "CSVLogger",
    "EvaluationPlugin",
    "ForwardRows",
    "JSONLinesLogger",
    "Logger",
    "ProgressBarLogger",
    "TensorBoardLogger",
    "TextLogger",
    "accuracy_on_seen",
    "average_accuracy",
    "average_incremental_accuracy",
    "backward_transfer",
    "default_loggers",
    "forgetting",
    "format_comparison",
    "format_matrix",
    "format_report",
    "forward_transfer",
    "memory_composition",
    "per_class_accuracy",
    "plot_accuracy_curves",
    "plot_accuracy_matrix",
    "plot_comparison",
    "read_results",
    "render_plots",
    "summarize",
    "write_results",
]
