"""Continual-learning metrics: pure functions of the accuracy matrix.

The accuracy matrix ``R`` has one row per training experience done and one
column per test experience: ``R[i][j]`` is the accuracy on the test data of
experience ``j`` after training on experiences ``0..i``. With ``T`` rows (a run
over the whole stream has ``T`` equal to the number of columns), the metrics
below follow the definitions of Lopez-Paz & Ranzato (GEM, 2017), Chaudhry et al.
(RWalk, 2018) and Rebuffi et al. (iCaRL, 2017). A metric that needs two
experiences or more is ``None`` for a one-row matrix.

An entry may be undefined: ``None`` (``null`` in results.json), the accuracy on a
test experience with no samples (NaN is read as None too). Each metric then
averages over the terms whose entries are all defined, and is ``None`` when no
term is, so an undefined accuracy never turns into a number.

>>> average_accuracy([[0.9, None], [0.5, None]])
0.5
"""

from __future__ import annotations

import math
import numbers
from typing import Dict, List, Optional, Sequence

Matrix = Sequence[Sequence[Optional[float]]]


def _entry(value) -> Optional[float]:
    """An accuracy as a float, or None where it is undefined (None or NaN)."""
    return None if value is None or math.isnan(value) else float(value)


def check_matrix(matrix: Matrix) -> List[List[Optional[float]]]:
    """A copy of ``matrix`` as lists of floats (None where undefined), after checking its shape.

    It must have at least one row, rows of equal length, no more rows than
    columns (a row is added per training experience, a column per test experience)
    and real numbers or None only; NaN becomes None.

    >>> check_matrix([[1, 0], [0.5, float("nan")]])
    [[1.0, 0.0], [0.5, None]]
    """
    if isinstance(matrix, (str, bytes)) or not isinstance(matrix, Sequence):
        raise TypeError(f"matrix must be a sequence of rows, got {type(matrix).__name__}")
    rows = [list(row) if isinstance(row, Sequence) else row for row in matrix]
    if not rows:
        raise ValueError("matrix must have at least one row, got 0 rows")
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise TypeError(f"matrix rows must be sequences, got {type(row).__name__} in row {i}")
        for value in row:
            if value is not None and (not isinstance(value, numbers.Real) or isinstance(value, bool)):
                raise TypeError(f"matrix entries must be real numbers or None, got {value!r} in row {i}")
    widths = sorted({len(row) for row in rows})
    if len(widths) != 1:
        raise ValueError(f"matrix rows must all have the same length, got lengths {widths}")
    if len(rows) > widths[0]:
        raise ValueError(
            f"matrix must have no more rows than columns, got {len(rows)} rows and "
            f"{widths[0]} columns"
        )
    return [[_entry(v) for v in row] for row in rows]


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    """The mean of the defined values (None when there is none)."""
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def accuracy_on_seen(matrix: Matrix) -> List[Optional[float]]:
    """For each row ``i``, the mean accuracy on the experiences seen so far,
    ``A_i = mean_{j <= i} R[i][j]`` (over the defined entries; None if none is).

    >>> accuracy_on_seen([[0.9, 0.0], [0.6, 0.8]])
    [0.9, 0.7]
    >>> accuracy_on_seen([[None, 0.0], [None, 0.8]])
    [None, 0.8]
    """
    rows = check_matrix(matrix)
    return [_mean(row[: i + 1]) for i, row in enumerate(rows)]


def average_accuracy(matrix: Matrix) -> Optional[float]:
    """Average accuracy: the mean of the last row,
    ``ACC = 1/T sum_{j < T} R[T-1][j]``.

    Only the ``T`` experiences trained on count, so the value of a run stopped
    early is its average over what it has seen; over the whole stream it is the
    mean of the whole last row.

    >>> round(average_accuracy([[0.9, 0.1, 0.0], [0.6, 0.8, 0.1], [0.5, 0.7, 0.9]]), 10)
    0.7
    """
    return accuracy_on_seen(matrix)[-1]


def average_incremental_accuracy(matrix: Matrix) -> Optional[float]:
    """Average incremental accuracy (iCaRL): the mean over rows of each row's mean
    on the experiences seen so far, ``1/T sum_i A_i`` with
    ``A_i = 1/(i+1) sum_{j <= i} R[i][j]``.

    >>> round(average_incremental_accuracy([[0.9, 0.0], [0.6, 0.8]]), 10)
    0.8
    """
    return _mean(accuracy_on_seen(matrix))


def forgetting(matrix: Matrix) -> Optional[float]:
    """Average forgetting (Chaudhry et al.): how far each earlier experience fell
    from its best accuracy, ``1/(T-1) sum_{i < T-1} (max_{l in [i, T-2]} R[l][i] - R[T-1][i])``.

    Positive means forgotten; ``None`` with one row.

    >>> round(forgetting([[0.9, 0.1, 0.0], [0.6, 0.8, 0.1], [0.5, 0.7, 0.9]]), 10)
    0.25
    """
    rows = check_matrix(matrix)
    t = len(rows)
    drops = []
    for i in range(t - 1):
        before = [rows[k][i] for k in range(i, t - 1) if rows[k][i] is not None]
        if before and rows[t - 1][i] is not None:
            drops.append(max(before) - rows[t - 1][i])
    return _mean(drops)


def backward_transfer(matrix: Matrix) -> Optional[float]:
    """Backward transfer (GEM): how learning later experiences changed the earlier
    ones, ``BWT = 1/(T-1) sum_{i < T-1} (R[T-1][i] - R[i][i])``.

    Negative means forgotten; ``None`` with one row.

    >>> round(backward_transfer([[0.9, 0.1, 0.0], [0.6, 0.8, 0.1], [0.5, 0.7, 0.9]]), 10)
    -0.25
    """
    rows = check_matrix(matrix)
    t = len(rows)
    return _mean([_difference(rows[t - 1][i], rows[i][i]) for i in range(t - 1)])


def forward_transfer(matrix: Matrix, baseline: Sequence[float]) -> Optional[float]:
    """Forward transfer (GEM): how learning the earlier experiences helps on the next
    one before training on it, against ``baseline[j]``, the accuracy on experience
    ``j`` of the model at initialisation:
    ``FWT = 1/(T-1) sum_{0 < i < T} (R[i-1][i] - baseline[i])``.

    ``None`` with one row.

    >>> round(forward_transfer([[0.9, 0.3, 0.0], [0.6, 0.8, 0.2], [0.5, 0.7, 0.9]],
    ...                        [0.1, 0.1, 0.1]), 10)
    0.15
    """
    rows = check_matrix(matrix)
    if isinstance(baseline, (str, bytes)) or not isinstance(baseline, Sequence):
        raise TypeError(f"baseline must be a sequence of accuracies, got {type(baseline).__name__}")
    if len(baseline) != len(rows[0]):
        raise ValueError(
            f"baseline must have one accuracy per matrix column ({len(rows[0])}), "
            f"got {len(baseline)}"
        )
    return _mean([_difference(rows[i - 1][i], baseline[i]) for i in range(1, len(rows))])


def _difference(a: Optional[float], b) -> Optional[float]:
    """``a - b``, or None when either is undefined."""
    if a is None or b is None:
        return None
    b = _entry(b)
    return None if b is None else a - b


def per_class_accuracy(correct: Sequence[int], total: Sequence[int]) -> List[Optional[float]]:
    """``correct[c] / total[c]`` for each class ``c``; ``None`` where no sample of ``c``
    was tested.

    >>> per_class_accuracy([3, 0, 1], [4, 0, 2])
    [0.75, None, 0.5]
    """
    if len(correct) != len(total):
        raise ValueError(
            f"correct and total must have the same length, got {len(correct)} and {len(total)}"
        )
    return [c / n if n else None for c, n in zip(correct, total)]


def summarize(matrix: Matrix, baseline: Optional[Sequence[float]] = None) -> Dict[str, Optional[float]]:
    """Every metric above in a dict (``forward_transfer`` is None without a baseline).

    >>> summarize([[1.0, 0.0], [0.5, 1.0]])["forgetting"]
    0.5
    """
    return {
        "average_accuracy": average_accuracy(matrix),
        "average_incremental_accuracy": average_incremental_accuracy(matrix),
        "forgetting": forgetting(matrix),
        "backward_transfer": backward_transfer(matrix),
        "forward_transfer": None if baseline is None else forward_transfer(matrix, baseline),
    }

