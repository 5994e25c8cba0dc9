"""The main job's output folder, and `clreplay report` / `clreplay compare` on it."""

import csv
import json

import pytest

from clreplay.cli import main
from clreplay.evaluation import format_matrix, read_results
from clreplay.evaluation.loggers import tensorboard_available
from clreplay.evaluation.metrics import backward_transfer, forgetting
from clreplay.evaluation.results import REQUIRED_KEYS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SHORT = ["run", "--epochs", "1", "--n-experiences", "2", "--mem-size", "40"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two short runs on split_digits: replay and fine-tuning."""
    root = tmp_path_factory.mktemp("runs")
    outputs = {}
    for name, args in [("replay", SHORT), ("naive", SHORT[:-2] + ["--no-replay"])]:
        assert main(args + ["--output", str(root / name)]) == 0
        outputs[name] = root / name
    return outputs


def test_run_writes_results_logs_and_plots(runs):
    folder = runs["replay"]
    results = read_results(folder)
    assert set(REQUIRED_KEYS) <= set(results)
    matrix = results["accuracy_matrix"]
    assert len(matrix) == 2 and all(len(row) == 2 for row in matrix)
    assert results["average_accuracy"] == pytest.approx(sum(matrix[-1]) / 2)
    assert results["forgetting"] == pytest.approx(forgetting(matrix))
    assert results["backward_transfer"] == pytest.approx(backward_transfer(matrix))
    assert results["forward_transfer"] == pytest.approx(matrix[0][1] - results["initial_accuracy"][1])
    assert results["config"]["mem_size"] == 40
    assert results["benchmark"]["n_experiences"] == 2
    assert len(results["class_accuracy"]) == 2 and len(results["class_accuracy"][0]) == 10
    assert [len(losses) for losses in results["epoch_losses"]] == [1, 1]
    timing = results["timing"]
    assert timing["total_s"] > 0
    assert [len(timing[k]) for k in ("train_s", "eval_s", "train_samples", "samples_per_s")] == [2] * 4
    memory = results["memory"]
    assert memory["mem_size"] == 40 and memory["policy"] == "ExperienceBalancedStoragePolicy"
    assert [m["groups"] for m in memory["per_experience"]] == [{"0": 40}, {"0": 20, "1": 20}]

    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "run_start" and names[-1] == "run_end"
    assert names.count("experience_end") == 2 and names.count("epoch_end") == 2
    assert events[-1]["average_accuracy"] == pytest.approx(results["average_accuracy"])
    with open(folder / "experiences.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["acc_exp0"]) for r in rows] == pytest.approx([row[0] for row in matrix])
    assert "experience 1 done" in (folder / "log.txt").read_text()
    for png in ("accuracy_matrix.png", "accuracy_curves.png"):
        assert (folder / png).read_bytes()[:8] == PNG_SIGNATURE
    assert (folder / "tensorboard").is_dir() == tensorboard_available()

    naive = read_results(runs["naive"])
    assert naive["memory"]["mem_size"] is None
    assert [m["size"] for m in naive["memory"]["per_experience"]] == [0, 0]


def test_run_prints_progress_metrics_and_table(tmp_path, capsys):
    assert main(SHORT) == 0
    out = capsys.readouterr().out
    assert "experience 2/2 classes" in out and "train loss" in out and "samples/s" in out
    for line in ["final average accuracy:", "average incremental accuracy:", "forgetting:",
                 "backward transfer:", "forward transfer:", "after \\ on"]:
        assert line in out


def test_report_prints_the_table_and_renders_the_plots(runs, capsys, tmp_path):
    folder = runs["replay"]
    results = read_results(folder)
    for png in folder.glob("*.png"):
        png.unlink()
    assert main(["report", str(folder)]) == 0
    out = capsys.readouterr().out
    assert format_matrix(results["accuracy_matrix"]) in out
    assert f"final average accuracy: {results['average_accuracy']:.4f}" in out
    assert f"forgetting: {results['forgetting']:+.4f}" in out
    assert "split_digits, replay 40 (experience)" in out
    for png in ("accuracy_matrix.png", "accuracy_curves.png"):
        assert (folder / png).read_bytes()[:8] == PNG_SIGNATURE

    assert main(["report", str(folder / "results.json"), "--plots-dir", str(tmp_path / "p")]) == 0
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["accuracy_curves.png",
                                                                  "accuracy_matrix.png",
                                                                  "task_accuracy_matrix.png"]
    assert main(["report", str(folder), "--no-plots", "--plots-dir", str(tmp_path / "q")]) == 0
    assert not (tmp_path / "q").exists()


def test_compare_puts_runs_side_by_side(runs, capsys, tmp_path):
    plot = tmp_path / "cmp.png"
    assert main(["compare", str(runs["replay"]), str(runs["naive"]), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out.splitlines()
    replay, naive = read_results(runs["replay"]), read_results(runs["naive"])
    row = next(line for line in out if line.startswith("replay "))
    assert row.split()[1:5] == [f"{replay['average_accuracy']:.4f}",
                                f"{replay['average_incremental_accuracy']:.4f}",
                                f"{replay['forgetting']:+.4f}", f"{replay['backward_transfer']:+.4f}"]
    assert row.split()[6] == "40"
    row = next(line for line in out if line.startswith("naive "))
    assert row.split()[1] == f"{naive['average_accuracy']:.4f}"
    assert plot.read_bytes()[:8] == PNG_SIGNATURE

    assert main(["compare", str(runs["replay"]), str(runs["naive"]), "--labels", "A", "B",
                 "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "\nA " in out and "\nB " in out and "plot:" not in out


def test_compare_errors(runs, capsys, tmp_path):
    assert main(["compare", str(runs["replay"]), str(runs["naive"]), "--labels", "A",
                 "--plot", str(tmp_path / "x.png")]) == 2
    assert "labels must give one name per DIR (2), got 1" in capsys.readouterr().err
    assert main(["compare", str(runs["replay"]), str(tmp_path / "missing")]) == 2
    assert "no " in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "clreplay run --output DIR" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
