"""results.json written and read back; text reports."""

import json

import pytest
import torch

from clreplay.evaluation import (
    format_comparison,
    format_matrix,
    format_report,
    read_results,
    write_results,
)
from clreplay.evaluation.reports import format_metrics, run_label, unique_labels
from clreplay.evaluation.results import REQUIRED_KEYS, jsonable

R = [[0.6, 0.1], [0.8, 0.9]]


def results(**extra):
    return {
        "accuracy_matrix": R,
        "average_accuracy": 0.85,
        "average_incremental_accuracy": 0.725,
        "forgetting": -0.2,
        "backward_transfer": 0.2,
        "forward_transfer": None,
        "config": {"benchmark": "split_digits", "replay": True, "mem_size": 50,
                   "policy": "class", "selection": "herding"},
        "timing": {"total_s": 1.5, "train_s": [0.5, 0.75]},
        "memory": {"mem_size": 50, "policy": "ClassBalancedStoragePolicy",
                   "per_experience": [{"size": 50, "classes": {"0": 25, "1": 25}}]},
        **extra,
    }


def test_round_trip_through_a_folder_and_a_file(tmp_path):
    path = write_results(results(), tmp_path / "run")
    assert path == tmp_path / "run" / "results.json"
    assert read_results(tmp_path / "run") == results()
    assert read_results(path) == results()
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_non_finite_numbers_and_tensors_become_plain_json(tmp_path):
    path = write_results(results(extra={"loss": float("nan"), "w": torch.tensor([1, 2])}), tmp_path)
    data = json.loads(path.read_text())  # strict JSON: no NaN token
    assert "NaN" not in path.read_text()
    assert data["extra"] == {"loss": None, "w": [1, 2]}
    assert jsonable({1: float("-inf"), "p": (0.5,)}) == {"1": None, "p": [0.5]}
    with pytest.raises(TypeError, match="value must be JSON data, tensors or paths, got object"):
        jsonable(object())


def test_missing_keys_are_refused_on_both_sides(tmp_path):
    bad = results()
    del bad["memory"], bad["timing"]
    with pytest.raises(ValueError, match=r"missing \['timing', 'memory'\]"):
        write_results(bad, tmp_path)
    (tmp_path / "results.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"results.json must have the keys .*; missing \['timing', 'memory'\]"):
        read_results(tmp_path)
    assert set(REQUIRED_KEYS) <= set(results())


def test_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no .*results.json .*clreplay run --output DIR"):
        read_results(tmp_path / "nowhere")
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(ValueError, match="must hold JSON, got a parse error"):
        read_results(tmp_path)
    (tmp_path / "results.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object, got list"):
        read_results(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps(results(accuracy_matrix=[[0.5], [0.5]])))
    with pytest.raises(ValueError, match="accuracy_matrix is not valid: matrix must have no more rows"):
        read_results(tmp_path)
    with pytest.raises(TypeError, match="results must be a dict, got list"):
        write_results([], tmp_path)


def test_format_matrix_and_metrics():
    assert format_matrix(R).splitlines() == [
        "after \\ on        1       2     avg",
        "         1    0.600   0.100   0.600",
        "         2    0.800   0.900   0.850",
    ]
    assert format_metrics(results()).splitlines() == [
        "final average accuracy: 0.8500",
        "average incremental accuracy: 0.7250",
        "forgetting: -0.2000",
        "backward transfer: +0.2000",
        "forward transfer: n/a",
        "total time: 1.5 s",
    ]
    report = format_report(results(), source="out")
    assert report.startswith("out: split_digits, replay 50 (class, herding)\n\nafter \\ on")


def test_comparison_table():
    naive = results(config={"benchmark": "split_digits", "replay": False}, average_accuracy=0.45,
                    memory={"mem_size": None}, accuracy_matrix=[[1.0, 0.0], [0.0, 0.9]])
    lines = format_comparison({"herding": results(), "naive": naive}).splitlines()
    assert lines[0].split() == ["run", "avg", "acc", "avg", "incr", "acc", "forgetting", "BWT",
                                "FWT", "memory", "time", "(s)", "method"]
    assert lines[2].split() == ["herding", "0.8500", "0.7250", "-0.2000", "+0.2000", "n/a", "50", "1.5", "er"]
    assert lines[3].split()[:3] == ["naive", "0.4500", "0.7250"]
    assert lines[3].split()[-3:] == ["n/a", "1.5", "naive"]  # no memory; the time; the method
    assert "herding  0.600 0.850" in lines
    assert "naive    1.000 0.450" in lines
    assert "naive    split_digits, no replay" in lines
    with pytest.raises(ValueError, match="runs must be a non-empty dict"):
        format_comparison({})


def test_labels():
    assert run_label({"benchmark": "b", "mem_size": 10, "policy": "experience",
                      "selection": "herding"}) == "b, replay 10 (experience)"
    assert unique_labels(["a", "b"], [{}, {}]) == ["a", "b"]
    assert unique_labels(["x", "x"], [{"replay": False}, {"replay": False}]) == [
        "1: run, no replay", "2: run, no replay"]
