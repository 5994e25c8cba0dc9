"""What a user reads after resuming inside an experience: the per-experience lines, the final
matrix and metrics are those of a run that never stopped (not only results.json)."""

import json
import re

import pytest

import clreplay.run as run_module
from clreplay.cli import main

BUILD = run_module.build_strategy
ARGS = ["--epochs", "2", "--n-experiences", "3", "--hidden", "8", "--mem-size", "30", "--seed", "4"]


@pytest.fixture(autouse=True)
def no_plots(monkeypatch):
    monkeypatch.setattr(run_module, "render_plots", lambda results, folder: [])


class InterruptAt:
    """Cross-entropy raising KeyboardInterrupt (Ctrl-C) at a given (experience, epoch,
    iteration) of the training (all from 0)."""

    def __init__(self, strategy, where):
        self.strategy, self.loss_fn, self.where = strategy, strategy.loss_fn, where

    def __call__(self, output, target):
        clock = self.strategy.clock
        if (clock.train_exp_counter, clock.train_exp_epochs, clock.train_epoch_iterations) == self.where:
            raise KeyboardInterrupt
        return self.loss_fn(output, target)


def run(capsys, monkeypatch, folder, *, where=None):
    def build(config, benchmark, **kwargs):
        strategy = BUILD(config, benchmark, **kwargs)
        if where is not None:
            strategy.loss_fn = InterruptAt(strategy, where)
        return strategy

    monkeypatch.setattr(run_module, "build_strategy", build)
    code = main(["run", *ARGS, "--output", str(folder / "out"), "--checkpoint-dir", str(folder / "ck"),
                 "--checkpoint-every", "3"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def readable(stdout):
    """The lines a user reads, without timings and throughputs, the start line or the paths."""
    lines = []
    for line in stdout.splitlines():
        if line.startswith(("resumed from", "results written", "total time")) or not line.strip():
            continue
        line = re.sub(r", [\d.]+ samples/s", "", line)
        lines.append(re.sub(r" \([\d.]+s\)$", "", line))
    return lines


@pytest.mark.parametrize("where", [(0, 1, 2), (1, 0, 4), (2, 1, 1)],
                         ids=["experience-1", "experience-2", "experience-3"])
def test_resumed_inside_an_experience_prints_what_an_uninterrupted_run_prints(
        tmp_path, capsys, monkeypatch, where):
    code, reference, _ = run(capsys, monkeypatch, tmp_path / "ref")
    assert code == 0
    code, before, err = run(capsys, monkeypatch, tmp_path / "stopped", where=where)
    assert code == 130 and "holds the run up to its last save (every 3 iterations)" in err
    code, after, err = run(capsys, monkeypatch, tmp_path / "stopped")
    assert code == 0, err
    assert f"experience {where[0] + 1} from iteration" in after
    # Before the fix: "matrix must have at least one row" (stopped in experience 1), or every
    # later line "accuracy on seen" of the first row and a one-row matrix (experience 2).
    expected = readable(reference)
    finished = [line for line in readable(before) if line.startswith("experience ")]
    assert finished == expected[1:1 + where[0]]  # the experiences done before the stop
    assert readable(after) == expected[:1] + expected[1 + where[0]:]
    matrix = json.loads((tmp_path / "ref" / "out" / "results.json").read_text())["accuracy_matrix"]
    rows = [line for line in readable(after) if re.match(r"^\s+\d+\s", line)]
    assert len(rows) == len(matrix) == 3
    for row, values in zip(rows, matrix):
        assert row.split()[1:4] == [f"{v:.3f}" for v in values]


def test_the_evaluator_keeps_the_lists_a_caller_holds_when_loading():
    from clreplay.evaluation.evaluator import EvaluationPlugin

    evaluator = EvaluationPlugin()
    held = evaluator.accuracy_matrix
    state = evaluator.state_dict()
    state["accuracy_matrix"] = [[0.5, 0.25]]
    evaluator.load_state_dict(state)
    assert held == [[0.5, 0.25]] and held is evaluator.accuracy_matrix
    state["accuracy_matrix"][0][0] = 1.0  # a copy: the saved state is not shared
    assert held == [[0.5, 0.25]]
