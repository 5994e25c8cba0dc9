import json
import subprocess
import sys

import pytest

from clreplay.cli import main


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ["--benchmark", "--epochs", "--batch-size", "--lr", "--mem-size", "--policy",
                   "--selection", "--seed", "--output", "--checkpoint-dir", "--device"]:
        assert option in out


def test_short_run_prints_progress_and_table(tmp_path, capsys):
    code = main(["run", "--epochs", "1", "--n-experiences", "2", "--mem-size", "40",
                 "--output", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "experience 1/2" in out and "experience 2/2" in out
    assert "final average accuracy" in out
    results = json.loads((tmp_path / "results.json").read_text())
    matrix = results["accuracy_matrix"]
    assert len(matrix) == 2 and all(len(row) == 2 for row in matrix)
    assert results["average_accuracy"] == pytest.approx(sum(matrix[-1]) / 2)
    assert results["config"]["mem_size"] == 40


def test_class_policy_with_herding(capsys):
    assert main(["run", "--epochs", "1", "--n-experiences", "2", "--policy", "class",
                 "--selection", "herding"]) == 0
    assert "final average accuracy" in capsys.readouterr().out


def test_bad_values_exit_with_a_clear_message(capsys):
    assert main(["run", "--mem-size", "0"]) == 2
    assert capsys.readouterr().err == "clreplay run: error: --mem-size must be a positive int, got 0\n"
    assert main(["run", "--n-experiences", "11"]) == 2
    assert capsys.readouterr().err == (
        "clreplay run: error: --n-experiences must be at most the number of classes (10), got 11\n")


def test_unknown_benchmark_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--benchmark", "split_digit"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.endswith(
        "clreplay run: error: argument --benchmark: must be one of 'permuted_fashion_mnist', "
        "'rotated_fashion_mnist', 'split_cifar10', 'split_cifar100', 'split_digits', 'split_fashion_mnist', "
        "'split_mnist', 'split_npz', 'split_synthetic', got 'split_digit'; did you mean 'split_digits'?\n")


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "clreplay", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "run" in result.stdout
