"""A test experience with no samples has an undefined accuracy: None everywhere, never NaN,
and every file `clreplay run` writes is read back by `clreplay report` and `compare`."""

import json

import numpy as np
import pytest

from clreplay.cli import main
from clreplay.evaluation.metrics import (
    accuracy_on_seen,
    average_incremental_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
    summarize,
)
from clreplay.evaluation.plots import plot_accuracy_curves, plot_accuracy_matrix, plot_comparison
from clreplay.evaluation.reports import format_comparison, format_matrix

# Column 1 is undefined (no test sample of experience 1).
R = [
    [0.6, None, 0.2],
    [0.8, None, 0.3],
    [0.7, None, 1.0],
]


def test_metrics_average_over_defined_entries_only():
    assert accuracy_on_seen(R) == pytest.approx([0.6, 0.8, 0.85])
    assert summarize(R)["average_accuracy"] == pytest.approx(0.85)
    assert average_incremental_accuracy(R) == pytest.approx((0.6 + 0.8 + 0.85) / 3)
    assert forgetting(R) == pytest.approx(0.8 - 0.7)  # experience 1's term is undefined
    assert backward_transfer(R) == pytest.approx(0.7 - 0.6)
    assert forward_transfer(R, [0.1, 0.1, 0.1]) == pytest.approx(0.3 - 0.1)
    assert forward_transfer(R, [0.1, 0.1, None]) is None
    assert summarize([[None, 0.5]]) == {"average_accuracy": None, "average_incremental_accuracy": None,
                                        "forgetting": None, "backward_transfer": None,
                                        "forward_transfer": None}


def test_nan_is_read_as_undefined():
    assert accuracy_on_seen([[float("nan"), 1.0], [0.5, 1.0]]) == [None, 0.75]


def test_reports_and_plots_show_undefined_entries(tmp_path):
    assert format_matrix(R).splitlines()[3] == "         3    0.700     n/a   1.000   0.850"
    assert "n/a" in format_comparison({"a": {"accuracy_matrix": [[None, 0.0]]}})
    for plot in (plot_accuracy_matrix, plot_accuracy_curves):
        assert plot(R, tmp_path / f"{plot.__name__}.png").stat().st_size > 0
    assert plot_comparison({"a": [[None, 0.0]]}, tmp_path / "c.png").exists()


def write_npz_without_class_3_in_test(path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = np.arange(40) % 4
    keep = y[:20] != 3
    np.savez(path, x_train=x, y_train=y, x_test=x[:20][keep], y_test=y[:20][keep])
    return path


def test_run_with_an_empty_test_experience_reports_it_undefined(tmp_path, capsys, monkeypatch):
    import clreplay.run as run_module

    monkeypatch.setattr(run_module, "render_plots", lambda results, folder: [])  # report draws them
    data = write_npz_without_class_3_in_test(tmp_path / "d.npz")
    out = tmp_path / "out"
    assert main(["run", "--benchmark", "split_npz", "--data", str(data), "--n-experiences", "4",
                 "--epochs", "1", "--hidden", "8", "--mem-size", "8", "--output", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    matrix = results["accuracy_matrix"]
    empty = [e for e, classes in enumerate(results["benchmark"]["classes"]) if classes == [3]][0]
    assert [row[empty] for row in matrix] == [None] * 4
    assert all(v is not None for row in matrix for j, v in enumerate(row) if j != empty)
    assert results["initial_accuracy"][empty] is None
    assert results["average_accuracy"] == pytest.approx(
        sum(v for v in matrix[-1] if v is not None) / 3)
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert [e["accuracy"][empty] for e in events if e["event"] == "experience_end"] == [None] * 4
    capsys.readouterr()

    assert main(["report", str(out)]) == 0
    assert "n/a" in capsys.readouterr().out
    assert main(["compare", str(out), str(out), "--labels", "a", "b",
                 "--plot", str(tmp_path / "c.png")]) == 0
