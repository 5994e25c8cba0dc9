"""Metrics of the accuracy matrix, checked on matrices computed by hand."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clreplay.evaluation.metrics import (
    accuracy_on_seen,
    average_accuracy,
    average_incremental_accuracy,
    backward_transfer,
    check_matrix,
    forgetting,
    forward_transfer,
    per_class_accuracy,
    summarize,
)

# R[i][j]: accuracy on experience j after training on experience i. Experience 0
# peaks after experience 1 (0.8 > 0.6), so forgetting (from the best) and backward
# transfer (from the diagonal) differ.
R = [
    [0.6, 0.1, 0.2],
    [0.8, 0.9, 0.3],
    [0.7, 0.5, 1.0],
]


def test_accuracy_on_seen_is_the_mean_of_the_lower_triangle_row():
    # 0.6; (0.8 + 0.9) / 2; (0.7 + 0.5 + 1.0) / 3
    assert accuracy_on_seen(R) == pytest.approx([0.6, 0.85, 2.2 / 3])


def test_average_accuracy_is_the_mean_of_the_last_row():
    assert average_accuracy(R) == pytest.approx(2.2 / 3)


def test_average_incremental_accuracy_is_the_mean_of_the_row_means():
    assert average_incremental_accuracy(R) == pytest.approx((0.6 + 0.85 + 2.2 / 3) / 3)


def test_forgetting_is_measured_from_the_best_earlier_accuracy():
    # experience 0: max(0.6, 0.8) - 0.7 = 0.1; experience 1: 0.9 - 0.5 = 0.4
    assert forgetting(R) == pytest.approx(0.25)


def test_backward_transfer_is_measured_from_the_diagonal():
    # experience 0: 0.7 - 0.6 = +0.1; experience 1: 0.5 - 0.9 = -0.4
    assert backward_transfer(R) == pytest.approx(-0.15)


def test_forward_transfer_against_the_baseline():
    # R[0][1] - b[1] = 0.1 - 0.0; R[1][2] - b[2] = 0.3 - 0.1
    assert forward_transfer(R, [0.5, 0.0, 0.1]) == pytest.approx(0.15)


def test_partial_run_counts_only_experiences_trained_on():
    partial = R[:2]
    assert average_accuracy(partial) == pytest.approx(0.85)
    assert average_incremental_accuracy(partial) == pytest.approx((0.6 + 0.85) / 2)
    # experience 0 improved from 0.6 to 0.8: negative forgetting, positive transfer
    assert forgetting(partial) == pytest.approx(-0.2)
    assert backward_transfer(partial) == pytest.approx(0.2)
    assert forward_transfer(partial, [0.0, 0.05, 0.0]) == pytest.approx(0.05)


def test_single_experience_has_no_transfer_or_forgetting():
    one = [[0.9, 0.2]]
    assert average_accuracy(one) == 0.9
    assert average_incremental_accuracy(one) == 0.9
    assert forgetting(one) is None
    assert backward_transfer(one) is None
    assert forward_transfer(one, [0.1, 0.1]) is None


def test_perfect_memory_and_total_forgetting():
    # Fine-tuning that forgets everything: each old experience falls to 0.
    naive = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    assert average_accuracy(naive) == pytest.approx(1 / 3)
    assert forgetting(naive) == 1.0
    assert backward_transfer(naive) == -1.0
    keep = [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]
    assert forgetting(keep) == 0.0 and backward_transfer(keep) == 0.0
    assert average_incremental_accuracy(keep) == 1.0


def test_summarize_collects_every_metric():
    summary = summarize(R, baseline=[0.5, 0.0, 0.1])
    assert summary == pytest.approx({
        "average_accuracy": 2.2 / 3,
        "average_incremental_accuracy": (0.6 + 0.85 + 2.2 / 3) / 3,
        "forgetting": 0.25,
        "backward_transfer": -0.15,
        "forward_transfer": 0.15,
    })
    assert summarize(R)["forward_transfer"] is None


def test_per_class_accuracy():
    assert per_class_accuracy([3, 0, 1, 0], [4, 0, 2, 5]) == [0.75, None, 0.5, 0.0]
    with pytest.raises(ValueError, match="correct and total must have the same length, got 2 and 3"):
        per_class_accuracy([1, 2], [3, 4, 5])


def test_bad_matrices_are_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="matrix must have at least one row, got 0 rows"):
        average_accuracy([])
    with pytest.raises(ValueError, match=r"matrix rows must all have the same length, got lengths \[1, 2\]"):
        forgetting([[0.5, 0.5], [0.5]])
    with pytest.raises(ValueError, match="matrix must have no more rows than columns, got 2 rows and 1 columns"):
        backward_transfer([[0.5], [0.5]])
    with pytest.raises(TypeError, match="matrix entries must be real numbers or None, got 'x' in row 0"):
        average_accuracy([["x"]])
    with pytest.raises(TypeError, match="matrix must be a sequence of rows, got int"):
        average_accuracy(3)
    with pytest.raises(ValueError, match=r"baseline must have one accuracy per matrix column \(3\), got 2"):
        forward_transfer(R, [0.1, 0.1])
    with pytest.raises(TypeError, match="baseline must be a sequence of accuracies, got NoneType"):
        forward_transfer(R, None)


def test_check_matrix_copies_as_floats():
    rows = [[1, 0]]
    checked = check_matrix(rows)
    assert checked == [[1.0, 0.0]] and checked[0] is not rows[0]


@st.composite
def matrices(draw):
    t = draw(st.integers(1, 6))
    cols = draw(st.integers(t, 7))
    value = st.floats(0, 1, allow_nan=False)
    return [[draw(value) for _ in range(cols)] for _ in range(t)]


@given(matrices())
def test_forgetting_bounds_backward_transfer(matrix):
    # max over l in [i, T-2] of R[l][i] includes R[i][i], so F >= -BWT term by term.
    f, b = forgetting(matrix), backward_transfer(matrix)
    if len(matrix) == 1:
        assert f is None and b is None
    else:
        assert f >= -b - 1e-12
        assert -1 <= b <= 1 and -1 <= f <= 1
    assert 0 <= average_accuracy(matrix) <= 1
