"""Task-incremental accuracy: the logits masked to the tested experience's classes."""

import pytest
import torch
from torch import nn

from clreplay.benchmarks import Experience
from clreplay.data import ClassificationDataset
from clreplay.evaluation import EvaluationPlugin
from clreplay.training import Naive


class Logits(nn.Module):
    """The input is the logits (a parameter that never changes keeps the optimiser happy)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x + self.w * 0


def experience(logits, labels, index, classes):
    data = ClassificationDataset(torch.tensor(logits), torch.tensor(labels))
    return Experience(data, index, classes)


TEST = [
    experience([[0.1, 0.9, 5.0, 0.0],    # y=1: class-IL says 2 (wrong), task-IL among {0, 1} says 1
                [0.8, 0.2, 0.0, 3.0],    # y=0: class-IL 3 (wrong), task-IL 0 (right)
                [0.3, 0.4, 0.0, 0.0]],   # y=0: class-IL 1 (wrong), task-IL 1 (wrong)
               [1, 0, 0], 0, [0, 1]),
    experience([[9.0, 0.0, 0.5, 0.2],    # y=2: class-IL 0 (wrong), task-IL among {2, 3} says 2
                [0.0, 0.0, 0.1, 0.7]],   # y=3: both right
               [2, 3], 1, [2, 3]),
]


def test_exact_class_and_task_incremental_matrices():
    evaluator = EvaluationPlugin(TEST)
    model = Logits()
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=2,
                     eval_mb_size=2, evaluator=evaluator, seed=0)  # batches of 2: exp 0 spans two
    for e in TEST:
        strategy.train(e)
    assert evaluator.accuracy_matrix == [[0.0, 0.5], [0.0, 0.5]]
    assert evaluator.task_accuracy_matrix == [[2 / 3, 1.0], [2 / 3, 1.0]]
    assert evaluator.initial_task_accuracy == [2 / 3, 1.0]
    report = evaluator.report()
    assert report["task_accuracy_matrix"] == [[2 / 3, 1.0], [2 / 3, 1.0]]
    assert report["task_average_accuracy"] == pytest.approx(5 / 6)
    assert report["average_accuracy"] == 0.25
    assert report["task_forgetting"] == 0.0 and report["task_forward_transfer"] == 1.0 - 1.0
    assert evaluator.last_record["task_accuracy_on_seen"] == pytest.approx(5 / 6)
    # The class-IL per-class counts are unchanged by the task-IL counting.
    assert evaluator.class_accuracy[-1] == [0.0, 0.0, 0.0, 1.0]


def test_task_matrix_survives_a_state_round_trip():
    evaluator = EvaluationPlugin(TEST)
    model = Logits()
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), evaluator=evaluator, seed=0)
    strategy.train(TEST[0])
    other = EvaluationPlugin(TEST)
    other.load_state_dict(evaluator.state_dict())
    assert other.task_accuracy_matrix == [[2 / 3, 1.0]]


def test_report_compare_and_plots_show_both(tmp_path, capsys):
    from clreplay.evaluation.plots import render_plots
    from clreplay.evaluation.reports import format_comparison, format_report

    results = {"config": {"benchmark": "b", "replay": False}, "accuracy_matrix": [[0.5, 0.0], [0.25, 1.0]],
               "task_accuracy_matrix": [[1.0, 0.5], [0.75, 1.0]], "average_accuracy": 0.625,
               "task_average_accuracy": 0.875}
    report = format_report(results)
    assert "task-incremental accuracy (logits restricted to each experience's classes):" in report
    assert "task-incremental final average accuracy: 0.8750" in report
    table = format_comparison({"a": results}).splitlines()
    assert table[0].split()[-3:] == ["task-IL", "acc", "method"]
    assert table[2].split()[-2:] == ["0.8750", "naive"]
    assert "a        1.000 0.875" in table  # task-IL mean on seen after each experience
    names = [p.name for p in render_plots(results, tmp_path)]
    assert names == ["accuracy_matrix.png", "accuracy_curves.png", "task_accuracy_matrix.png"]
    assert (tmp_path / "task_accuracy_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_label_names_an_image_model():
    from clreplay.evaluation.reports import run_label

    assert run_label({"benchmark": "split_cifar10", "model": "resnet18", "augment": True,
                      "replay": False}) == "split_cifar10, resnet18, augmented, no replay"
