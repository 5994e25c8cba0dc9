"""Metrics requested by name, as an Avalanche script asks for them, on a model whose answers
are known: it predicts the class written in one column of the input."""

import math

import pytest
import torch
from torch import nn

from clreplay.benchmarks import Experience
from clreplay.data import ClassificationDataset
from clreplay.evaluation import (
    EvaluationPlugin,
    accuracy_metrics,
    bwt_metrics,
    forgetting_metrics,
    loss_metrics,
)
from clreplay.evaluation.loggers import Logger
from clreplay.training import Naive

CLASSES = 4
#: The loss of a logit vector 10 * one_hot(prediction): right, and wrong.
RIGHT = math.log(1 + 3 * math.exp(-10))
WRONG = 10 + RIGHT


class Oracle(nn.Module):
    """Predicts the class in column ``column`` of x, with logits 10 * one_hot (plus 0 * w, so
    that training has a gradient and changes nothing)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.column = 0

    def forward(self, x):
        return 10.0 * nn.functional.one_hot(x[:, self.column].long(), CLASSES).float() + 0.0 * self.w


def experience(index, labels, column0, column1, stream):
    x = torch.tensor([column0, column1], dtype=torch.float32).T
    return Experience(ClassificationDataset(x, torch.tensor(labels)), index, sorted(set(labels)),
                      stream_name=stream)


TRAIN = [experience(0, [0, 0, 1, 1], [0, 0, 1, 0], [0, 0, 1, 0], "train"),   # 3 of 4 right
         experience(1, [2, 2, 3, 3], [2, 2, 3, 3], [2, 3, 3, 3], "train")]   # 4 of 4 right
TEST = [experience(0, [0, 0, 1, 1], [0, 0, 1, 0], [0, 1, 1, 0], "test"),     # 3/4, then 2/4
        experience(1, [2, 2, 3, 3], [2, 2, 3, 3], [2, 2, 3, 3], "test")]     # 4/4, then 4/4


class Collect(Logger):
    def __init__(self):
        self.events = []

    def log(self, event, record):
        if event == "metrics":
            self.events.append((record["phase"], record["step"], record["values"]))


def name(metric, phase="eval", stream="test", task=0, exp=None):
    text = f"{metric}/{phase}_phase/{stream}_stream" + ("" if task is None else f"/Task{task:03d}")
    return text + ("" if exp is None else f"/Exp{exp:03d}")


def run(*requests, epochs=1):
    model, logger = Oracle(), Collect()
    evaluator = EvaluationPlugin(*requests, loggers=[logger])
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=2,
                     train_epochs=epochs, evaluator=evaluator, seed=0)
    strategy.train(TRAIN[0])
    first = strategy.eval(TEST)
    model.column = 1  # "training" on the next experience changes the answers on the first
    strategy.train(TRAIN[1])
    second = strategy.eval(TEST)
    return evaluator, logger, first, second


def test_eval_metrics_by_hand():
    evaluator, logger, first, second = run(
        accuracy_metrics(experience=True, stream=True, trained_experience=True),
        loss_metrics(experience=True, stream=True), forgetting_metrics(experience=True, stream=True),
        bwt_metrics(experience=True, stream=True))
    assert first.metrics == pytest.approx({
        name("Top1_Acc_Exp", exp=0): 0.75, name("Top1_Acc_Exp", exp=1): 1.0,
        name("Top1_Acc_Stream"): 7 / 8,
        name("Accuracy_On_Trained_Experiences"): 0.75,  # experience 0 only
        name("Loss_Exp", exp=0): (3 * RIGHT + WRONG) / 4, name("Loss_Exp", exp=1): RIGHT,
        name("Loss_Stream"): (7 * RIGHT + WRONG) / 8,
        # Nothing trained before the last experience: no experience forgets yet; the mean is 0.
        name("StreamForgetting", task=None): 0.0, name("StreamBWT", task=None): 0.0,
    }, rel=1e-3, abs=1e-6)  # the losses are float32 sums
    assert second.metrics == pytest.approx({
        name("Top1_Acc_Exp", exp=0): 0.5, name("Top1_Acc_Exp", exp=1): 1.0,
        name("Top1_Acc_Stream"): 6 / 8, name("Accuracy_On_Trained_Experiences"): 6 / 8,
        name("Loss_Exp", exp=0): (2 * RIGHT + 2 * WRONG) / 4, name("Loss_Exp", exp=1): RIGHT,
        name("Loss_Stream"): (6 * RIGHT + 2 * WRONG) / 8,
        # Experience 0: 0.75 right after training on it, 0.5 now.
        name("ExperienceForgetting", exp=0): 0.25, name("StreamForgetting", task=None): 0.25,
        name("ExperienceBWT", exp=0): -0.25, name("StreamBWT", task=None): -0.25,
    }, rel=1e-3, abs=1e-6)
    assert second.metrics == pytest.approx({**evaluator.get_last_metrics()})
    assert [(phase, step) for phase, step, _ in logger.events] == [("eval", 2), ("eval", 4)]
    history = evaluator.get_all_metrics()
    assert history[name("Top1_Acc_Exp", exp=0)] == ([2, 4], [0.75, 0.5])
    assert history[name("ExperienceForgetting", exp=0)] == ([4], [0.25])


def test_train_metrics_by_hand():
    evaluator, logger, _, _ = run(accuracy_metrics(minibatch=True, epoch=True, epoch_running=True),
                                  loss_metrics(epoch=True), epochs=2)
    history = evaluator.get_all_metrics()
    epoch_accuracy = name("Top1_Acc_Epoch", phase="train", stream="train")
    # Experience 0 (column 0): 3 of 4 right in each epoch; experience 1 (column 1): 3 of 4.
    assert history[epoch_accuracy] == ([2, 4, 6, 8], [0.75, 0.75, 0.75, 0.75])
    assert history[name("Loss_Epoch", phase="train", stream="train")][1] == pytest.approx(
        [(3 * RIGHT + WRONG) / 4] * 4, rel=1e-3)
    batches = history[name("Top1_Acc_MB", phase="train", stream="train")]
    assert batches[0] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert sorted(batches[1][:2]) == [0.5, 1.0] and sum(batches[1][:2]) / 2 == 0.75
    running = history[name("Top1_RunningAcc_Epoch", phase="train", stream="train")]
    assert running[1][1] == 0.75 and running[1][0] == batches[1][0]  # the epoch so far
    assert not any(name("Top1_Acc_Exp", exp=0) in values for _, _, values in logger.events)


def test_arguments():
    assert EvaluationPlugin(TEST).test_stream == TEST and EvaluationPlugin(TEST).named is None
    both = EvaluationPlugin(TEST, accuracy_metrics(stream=True), [loss_metrics(epoch=True)])
    assert both.test_stream == TEST and [r.name for r in both.named.requests] == \
        ["Top1_Acc_Stream", "Loss_Epoch"]
    assert EvaluationPlugin(accuracy_metrics(), test_stream=TEST).named is None  # nothing asked
    with pytest.raises(TypeError, match="metrics must be accuracy_metrics"):
        EvaluationPlugin("accuracy")
    with pytest.raises(TypeError, match="EvaluationPlugin takes one test stream, got 2"):
        EvaluationPlugin(TEST, test_stream=TEST)
    with pytest.raises(TypeError, match="experience must be a bool, got 1"):
        accuracy_metrics(experience=1)


def test_state_round_trip_keeps_the_reference_accuracies():
    evaluator, _, _, _ = run(forgetting_metrics(experience=True))
    fresh = EvaluationPlugin(forgetting_metrics(experience=True))
    fresh.load_state_dict(evaluator.state_dict())
    assert fresh.get_all_metrics() == evaluator.get_all_metrics()
    assert fresh.named.state_dict() == evaluator.named.state_dict()
    with pytest.raises(KeyError, match=r"missing \['named_metrics'\]"):
        state = evaluator.state_dict()
        del state["named_metrics"]
        EvaluationPlugin(forgetting_metrics(experience=True)).load_state_dict(state)
    plain = EvaluationPlugin()
    state = plain.state_dict()
    assert "named_metrics" not in state
    plain.load_state_dict(state)  # checkpoints of runs without named metrics load as before
