"""`clreplay run --nproc N` and `torchrun ... -m clreplay run`: the same results as one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clreplay.cli import main

SRC = str(Path(__file__).resolve().parent.parent / "src")
RUN = ["run", "--epochs", "1", "--n-experiences", "2", "--mem-size", "40", "--hidden", "32"]


def _results(folder):
    return json.loads((Path(folder) / "results.json").read_text())


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    folder = tmp_path_factory.mktemp("single")
    assert main(RUN + ["--output", str(folder)]) == 0
    return _results(folder)


def _events(folder):
    return [json.loads(line)["event"] for line in (Path(folder) / "events.jsonl").read_text().splitlines()]


def test_nproc_starts_the_processes_and_rank_0_writes_the_single_process_results(
        tmp_path, single, capsys):
    capsys.readouterr()
    assert main(RUN + ["--nproc", "2", "--output", str(tmp_path)]) == 0
    results = _results(tmp_path)
    assert results["config"]["world_size"] == 2 and single["config"]["world_size"] == 1
    assert results["accuracy_matrix"] == single["accuracy_matrix"]
    # Task-IL counts too are each rank's share of the batches, summed over the ranks.
    assert results["task_accuracy_matrix"] == single["task_accuracy_matrix"]
    assert results["initial_task_accuracy"] == single["initial_task_accuracy"]
    assert results["class_accuracy"] == single["class_accuracy"]
    assert results["timing"]["train_samples"] == single["timing"]["train_samples"]
    assert results["train_loss"] == pytest.approx(single["train_loss"], rel=1e-5)
    experience = ["experience_start", "epoch_start", "epoch_end", "experience_end"]
    assert _events(tmp_path) == ["run_start"] + experience * 2 + ["run_end"]  # written once


def test_torchrun_runs_the_same_job(tmp_path, single):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "clreplay", *RUN, "--output", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("\nfinal average accuracy") == 1  # rank 0 prints, alone
    results = _results(tmp_path)
    assert results["config"]["world_size"] == 2
    assert results["accuracy_matrix"] == single["accuracy_matrix"]


def test_bad_process_counts_are_refused_before_any_process_starts(capsys, monkeypatch):
    assert main(RUN + ["--nproc", "0"]) == 2
    assert "--nproc must be a positive int, got 0" in capsys.readouterr().err
    assert main(RUN + ["--batch-size", "31", "--nproc", "2"]) == 2
    assert ("--batch-size must be a multiple of --nproc, the number of processes, so that each "
            "trains on an equal share of every batch; got --batch-size 31 with --nproc 2") in capsys.readouterr().err
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(RUN + ["--nproc", "2"]) == 2
    assert ("--nproc must be left out under torchrun, which starts the processes "
            "(--nproc-per-node), got --nproc 2") in capsys.readouterr().err
