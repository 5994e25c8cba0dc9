"""Evaluation: the accuracy matrix and the metrics derived from it, loggers,
results files, text reports and plots."""

from clreplay.evaluation.anytime import AnytimeEvaluation
from clreplay.evaluation.compute import ForwardRows
from clreplay.evaluation.evaluator import EvaluationPlugin, memory_composition
from clreplay.evaluation.loggers import (
    CSVLogger,
    InteractiveLogger,
    JSONLinesLogger,
    Logger,
    ProgressBarLogger,
    TensorBoardLogger,
    TextLogger,
    WandBLogger,
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
from clreplay.evaluation.named_metrics import (
    MetricRequest,
    accuracy_metrics,
    bwt_metrics,
    forgetting_metrics,
    loss_metrics,
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
    "InteractiveLogger",
    "JSONLinesLogger",
    "Logger",
    "MetricRequest",
    "ProgressBarLogger",
    "TensorBoardLogger",
    "TextLogger",
    "WandBLogger",
    "accuracy_metrics",
    "accuracy_on_seen",
    "average_accuracy",
    "average_incremental_accuracy",
    "backward_transfer",
    "bwt_metrics",
    "default_loggers",
    "forgetting",
    "forgetting_metrics",
    "format_comparison",
    "format_matrix",
    "format_report",
    "forward_transfer",
    "loss_metrics",
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
