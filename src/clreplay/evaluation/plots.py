"""PNG plots of a run: the accuracy matrix as a heat map, accuracy curves, comparisons.

Figures are drawn on matplotlib's Agg canvas directly (``Figure`` +
``FigureCanvasAgg``), never through ``pyplot``: no window opens, no global backend
is switched and no figure is left open in the caller's session.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional

from clreplay.evaluation.metrics import Matrix, accuracy_on_seen, check_matrix
from clreplay.evaluation.reports import benchmark_name, run_label

MATRIX_PLOT = "accuracy_matrix.png"
TASK_MATRIX_PLOT = "task_accuracy_matrix.png"
CURVES_PLOT = "accuracy_curves.png"

# Beyond this many experiences the numbers would not fit in the cells.
_MAX_ANNOTATED = 20


def _with_nan(rows) -> List[List[float]]:
    """Undefined accuracies (None) as NaN: matplotlib leaves them blank."""
    return [[float("nan") if v is None else v for v in row] for row in rows]


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def _fit_title(figure, text: str):
    """``text`` as the figure's title, centred on the figure and wrapped onto as many lines
    as it needs to fit the figure's width (a run's label can be longer than a heat map is
    wide); returns the title's Text."""
    import textwrap

    title = figure.suptitle(text, fontsize=11)
    renderer = figure.canvas.get_renderer()
    room = 0.94 * figure.bbox.width
    chars = len(text)
    while chars > 12 and title.get_window_extent(renderer).width > room:
        width = title.get_window_extent(renderer).width
        chars = min(chars - 1, int(chars * room / width))
        title.set_text("\n".join(textwrap.wrap(text, chars)))
    return title


def _number_ticks(axis, count: int) -> None:
    """Ticks at 0..count-1 labelled 1..count: experiences as people number them."""
    axis.set_ticks(range(count), [str(i + 1) for i in range(count)])


def accuracy_matrix_figure(matrix: Matrix, *, title: Optional[str] = None):
    """The Figure of :func:`plot_accuracy_matrix` (experiences numbered from 1)."""
    rows = _with_nan(check_matrix(matrix))
    n_rows, n_cols = len(rows), len(rows[0])
    side = min(max(4.0, 0.6 * n_cols + 2.5), 16.0)
    figure = _figure(side, min(max(3.5, 0.6 * n_rows + 2.0), 16.0))
    ax = figure.add_subplot()
    image = ax.imshow(rows, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    figure.colorbar(image, ax=ax, label="accuracy")
    if max(n_rows, n_cols) <= _MAX_ANNOTATED:
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                # Dark text on the light (high) end of viridis, light text elsewhere.
                ax.text(j, i, "n/a" if value != value else f"{value:.2f}", ha="center",
                        va="center", fontsize=8, color="black" if value > 0.6 else "white")
    _number_ticks(ax.xaxis, n_cols)
    _number_ticks(ax.yaxis, n_rows)
    ax.set_xlabel("tested on experience")
    ax.set_ylabel("after training on experience")
    _fit_title(figure, title or "accuracy matrix R[i][j]")
    return figure


def plot_accuracy_matrix(matrix: Matrix, path: str | os.PathLike, *,
                         title: Optional[str] = None) -> Path:
    """The accuracy matrix as a heat map, each cell annotated with its value.

    Rows: the experience just trained on; columns: the test experience (both numbered
    from 1). Colours span 0 to 1, so two runs' heat maps compare at a glance. A long
    title is wrapped to the figure's width. Returns ``path``.
    """
    return _save(accuracy_matrix_figure(matrix, title=title), path)


#: Per-experience curves are drawn above the mean's line, whose markers are hollow: an
#: experience with one point so far (the last one learnt) stays visible.
_CURVE_Z, _MEAN_Z = 3, 2


def accuracy_curves_figure(matrix: Matrix, *, title: Optional[str] = None,
                           task_matrix: Optional[Matrix] = None):
    """The Figure of :func:`plot_accuracy_curves` (experiences numbered from 1)."""
    rows = _with_nan(check_matrix(matrix))
    steps = list(range(len(rows)))
    figure = _figure(7.0, 4.5)
    ax = figure.add_subplot()
    ax.plot(steps, _with_nan([accuracy_on_seen(matrix)])[0], color="black", linewidth=2.5, marker="s",
            markersize=8, markerfacecolor="none", zorder=_MEAN_Z, label="mean on seen")
    if task_matrix:
        task_seen = accuracy_on_seen(task_matrix)
        ax.plot(range(len(task_seen)), task_seen, color="black", linewidth=2.0, linestyle="--",
                marker="s", markersize=8, markerfacecolor="none", zorder=_MEAN_Z,
                label="mean on seen, task-IL")
    for j in range(min(len(rows), len(rows[0]))):
        ax.plot(steps[j:], [rows[i][j] for i in steps[j:]], marker="o", markersize=4,
                linewidth=1, zorder=_CURVE_Z, label=f"experience {j + 1}")
    _finish_curves(ax, len(rows))
    _fit_title(figure, title or "accuracy over the stream")
    return figure


def plot_accuracy_curves(matrix: Matrix, path: str | os.PathLike, *,
                         title: Optional[str] = None,
                         task_matrix: Optional[Matrix] = None) -> Path:
    """Accuracy on each experience over the stream, from when it is learnt on, and
    the mean accuracy on the experiences seen so far (bold, hollow squares); with
    ``task_matrix``, also its task-incremental mean on seen experiences (bold, dashed).
    Experiences are numbered from 1. Returns ``path``."""
    return _save(accuracy_curves_figure(matrix, title=title, task_matrix=task_matrix), path)


def comparison_figure(curves: Dict[str, Matrix], *, title: Optional[str] = None,
                      task_curves: Optional[Dict[str, Matrix]] = None):
    """The Figure of :func:`plot_comparison`."""
    if not isinstance(curves, dict) or not curves:
        raise ValueError(f"curves must be a non-empty dict from run label to matrix, got {curves!r}")
    figure = _figure(7.0, 4.5)
    ax = figure.add_subplot()
    longest = 1
    for label, matrix in curves.items():
        seen = accuracy_on_seen(matrix)
        longest = max(longest, len(seen))
        final = "n/a" if seen[-1] is None else f"{seen[-1]:.3f}"
        (line,) = ax.plot(range(len(seen)), _with_nan([seen])[0], marker="o", markersize=3,
                          linewidth=1.5, label=f"{label} ({final})")
        task = (task_curves or {}).get(label)
        if task:
            task_seen = accuracy_on_seen(task)
            task_final = "n/a" if task_seen[-1] is None else f"{task_seen[-1]:.3f}"
            ax.plot(range(len(task_seen)), _with_nan([task_seen])[0], linestyle="--", linewidth=1.2,
                    color=line.get_color(), label=f"{label}, task-IL ({task_final})")
    _finish_curves(ax, longest)
    _fit_title(figure, title or "mean accuracy on seen experiences")
    return figure


def plot_comparison(curves: Dict[str, Matrix], path: str | os.PathLike, *,
                    title: Optional[str] = None,
                    task_curves: Optional[Dict[str, Matrix]] = None) -> Path:
    """Several runs side by side: each run's mean accuracy on the experiences seen so
    far, after every experience (numbered from 1); the legend gives the final average
    accuracy. Runs with a matrix in ``task_curves`` get their task-incremental curve too
    (dashed, same colour)."""
    return _save(comparison_figure(curves, title=title, task_curves=task_curves), path)


def _finish_curves(ax, n_steps: int) -> None:
    _number_ticks(ax.xaxis, n_steps)
    ax.set_xlim(-0.2, max(n_steps - 1, 0) + 0.2)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("after training on experience")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")


def render_plots(results: dict, folder: str | os.PathLike) -> List[Path]:
    """The plots of a results dict (``accuracy_matrix.png``, ``accuracy_curves.png`` and,
    when the results have a task-incremental matrix, ``task_accuracy_matrix.png``)
    written into ``folder``; returns their paths."""
    matrix = results["accuracy_matrix"]
    task = results.get("task_accuracy_matrix") or None
    name = run_label(results.get("config") or {}, benchmark_name(results))
    folder = Path(folder)
    paths = [
        plot_accuracy_matrix(matrix, folder / MATRIX_PLOT, title=f"accuracy matrix: {name}"),
        plot_accuracy_curves(matrix, folder / CURVES_PLOT, title=f"accuracy: {name}",
                             task_matrix=task),
    ]
    if task:
        paths.append(plot_accuracy_matrix(task, folder / TASK_MATRIX_PLOT,
                                          title=f"task-incremental accuracy: {name}"))
    return paths
