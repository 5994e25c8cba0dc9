"""EvaluationPlugin: the matrix, per-class accuracy, losses, throughput, memory, events."""

import io
import json
import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clreplay import ClassBalancedStoragePolicy, ReplayPlugin
from clreplay.benchmarks import Experience, split_digits
from clreplay.data import ClassificationDataset
from clreplay.evaluation import EvaluationPlugin, Logger
from clreplay.models import make_mlp
from clreplay.training import Naive

N_OUT, MARGIN = 5, 5.0
# Cross-entropy of a sample the model gets right (logit MARGIN against four zeros),
# and of one it gets wrong (its true class at 0, another at MARGIN).
RIGHT = math.log(1 + 4 * math.exp(-MARGIN))
WRONG = MARGIN + RIGHT


class Lookup(nn.Module):
    """Predicts the class written in the first feature; its gradient is zero, so it never
    changes and every number below can be computed by hand."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return F.one_hot(x[:, 0].long(), N_OUT).float() * MARGIN + self.w * 0


def experience(predicted, labels, index):
    x = torch.tensor(predicted, dtype=torch.float32).unsqueeze(1)
    data = ClassificationDataset(x, torch.tensor(labels))
    return Experience(data, index, sorted(set(labels)))


TRAIN = [experience([0, 1, 1, 1], [0, 1, 0, 1], 0),  # one of four wrong
         experience([2, 3, 2, 3], [2, 3, 2, 3], 1)]   # all right
TEST = [experience([0, 1, 1, 1], [0, 0, 1, 1], 0),     # 3/4; class 0: 1/2, class 1: 2/2
        experience([2, 2, 3, 0, 0], [2, 2, 3, 3, 3], 1)]  # 3/5; class 2: 2/2, class 3: 1/3


class Recorder(Logger):
    def __init__(self):
        self.events, self.iterations = [], 0

    def log(self, event, record):
        self.events.append((event, json.loads(json.dumps(record))))

    def on_iteration(self, strategy):
        self.iterations += 1


def run_lookup(**kwargs):
    recorder = Recorder()
    evaluator = EvaluationPlugin(TEST, loggers=[recorder], **kwargs)
    model = Lookup()
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                     train_mb_size=2, train_epochs=2, eval_mb_size=3, evaluator=evaluator, seed=0)
    for exp in TRAIN:
        strategy.train(exp)
    return evaluator, recorder, strategy


def test_matrix_metrics_and_per_class_accuracy_by_hand():
    evaluator, _, _ = run_lookup()
    assert evaluator.accuracy_matrix == [[0.75, 0.6], [0.75, 0.6]]
    assert evaluator.initial_accuracy == [0.75, 0.6]
    assert evaluator.class_accuracy == [[0.5, 1.0, 1.0, pytest.approx(1 / 3), None]] * 2
    report = evaluator.report()
    assert report["average_accuracy"] == pytest.approx(0.675)
    assert report["average_incremental_accuracy"] == pytest.approx((0.75 + 0.675) / 2)
    assert report["forgetting"] == 0.0 and report["backward_transfer"] == 0.0
    assert report["forward_transfer"] == pytest.approx(0.0)  # R[0][1] - initial[1]


def test_training_loss_and_samples_by_hand():
    evaluator, _, _ = run_lookup()
    # Batches of two: the mean of the batch means is the mean over samples.
    assert evaluator.epoch_losses == [[pytest.approx(RIGHT + WRONG / 4 - RIGHT / 4)] * 2,
                                      [pytest.approx(RIGHT)] * 2]
    assert evaluator.train_loss == [pytest.approx((3 * RIGHT + WRONG) / 4), pytest.approx(RIGHT)]
    assert evaluator.train_samples == [8, 8]
    assert all(t > 0 for t in evaluator.train_time_s + evaluator.eval_time_s)
    timing = evaluator.report()["timing"]
    assert timing["samples_per_s"] == pytest.approx([8 / t for t in evaluator.train_time_s])


def test_events_in_order_with_their_records():
    _, recorder, _ = run_lookup()
    names = [name for name, _ in recorder.events]
    per_experience = ["experience_start"] + ["epoch_start", "epoch_end"] * 2 + ["experience_end"]
    assert names == per_experience * 2
    assert recorder.iterations == 8  # 2 experiences x 2 epochs x 2 batches
    start = recorder.events[0][1]
    assert start == {"experience": 0, "classes": [0, 1], "samples": 4, "epochs": 2, "batches": 2}
    epoch_ends = [r for name, r in recorder.events if name == "epoch_end"]
    assert [(r["experience"], r["epoch"], r["iterations"], r["samples"], r["train_iterations"])
            for r in epoch_ends] == [(0, 1, 2, 4, 2), (0, 2, 2, 4, 4), (1, 1, 2, 4, 6), (1, 2, 2, 4, 8)]
    assert epoch_ends[2]["loss"] == pytest.approx(RIGHT)
    end = recorder.events[-1][1]
    assert end["experience"] == 1 and end["classes"] == [2, 3]
    assert end["accuracy"] == [0.75, 0.6]
    assert end["accuracy_on_seen"] == pytest.approx(0.675)
    assert end["class_accuracy"] == [0.5, 1.0, 1.0, pytest.approx(1 / 3), None]
    assert end["train_samples"] == 8 and end["train_loss"] == pytest.approx(RIGHT)
    assert end["memory"] == {"size": 0, "groups": {}, "classes": {}, "mem_size": None, "policy": None}


def test_without_initial_eval_there_is_no_forward_transfer():
    evaluator, _, _ = run_lookup(initial_eval=False)
    assert evaluator.initial_accuracy is None
    assert evaluator.report()["forward_transfer"] is None
    assert evaluator.accuracy_matrix == [[0.75, 0.6], [0.75, 0.6]]


def test_evaluations_outside_the_evaluator_do_not_count_per_class():
    evaluator, _, strategy = run_lookup()
    strategy.eval(TEST)
    assert len(evaluator.class_accuracy) == 2
    assert evaluator.class_accuracy[-1][3] == pytest.approx(1 / 3)


def digits_run(evaluator, *, plugins=(), n=2):
    bench = split_digits(n_experiences=5)
    model = make_mlp(64, 10, [32], seed=0)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.05), train_mb_size=32,
                     plugins=list(plugins), evaluator=evaluator, seed=0)
    for exp in bench.train_stream[:n]:
        strategy.train(exp)
    return bench, strategy


def test_memory_size_and_composition_per_experience():
    replay = ReplayPlugin(mem_size=100)
    evaluator = EvaluationPlugin(split_digits().test_stream)
    digits_run(evaluator, plugins=[replay])
    sizes = [(m["size"], m["groups"]) for m in evaluator.memory]
    assert sizes == [(100, {"0": 100}), (100, {"0": 50, "1": 50})]
    counted = Counter(torch.cat([g.targets for g in replay.ext_mem.values()]).tolist())
    assert evaluator.memory[-1]["classes"] == {str(c): n for c, n in sorted(counted.items())}
    assert evaluator.memory[-1]["mem_size"] == 100
    assert evaluator.memory[-1]["policy"] == "ExperienceBalancedStoragePolicy"
    assert evaluator.report()["memory"]["mem_size"] == 100


def test_class_balanced_memory_groups_are_its_classes():
    policy = ClassBalancedStoragePolicy(ext_mem={}, mem_size=60)
    evaluator = EvaluationPlugin(split_digits().test_stream)
    bench, _ = digits_run(evaluator, plugins=[ReplayPlugin(60, policy)])
    last = evaluator.memory[-1]
    classes = bench.train_stream[0].classes_in_this_experience + bench.train_stream[1].classes_in_this_experience
    assert last["groups"] == last["classes"] == {str(c): 15 for c in sorted(classes)}


def test_initial_eval_does_not_change_training():
    test = split_digits().test_stream
    with_baseline, plain = EvaluationPlugin(test), EvaluationPlugin(test, initial_eval=False)
    _, a = digits_run(with_baseline)
    _, b = digits_run(plain)
    assert with_baseline.accuracy_matrix == plain.accuracy_matrix
    for name, tensor in a.model.state_dict().items():
        assert torch.equal(tensor, b.model.state_dict()[name]), name
    assert len(with_baseline.initial_accuracy) == 5


def test_state_dict_is_plain_data_and_round_trips():
    evaluator, _, strategy = run_lookup()
    state = evaluator.state_dict()
    json.dumps(state)  # plain data
    buffer = io.BytesIO()
    torch.save(strategy.state_dict()["plugins"][-1], buffer)  # the strategy carries it
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True) == state
    fresh = EvaluationPlugin(TEST)
    fresh.load_state_dict(state)
    assert fresh.report() == evaluator.report()
    state["accuracy_matrix"].append([0.0, 0.0])  # a copy, not the evaluator's lists
    assert len(evaluator.accuracy_matrix) == 2


def test_resumed_evaluator_continues_the_matrix():
    evaluator, _, strategy = run_lookup()
    saved = strategy.state_dict()
    resumed = EvaluationPlugin(TEST)
    model = Lookup()
    again = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                  train_mb_size=2, train_epochs=2, eval_mb_size=3, evaluator=resumed, seed=0)
    again.load_state_dict(saved)
    again.train(TRAIN[1])
    assert resumed.accuracy_matrix == [[0.75, 0.6]] * 3
    assert resumed.initial_accuracy == [0.75, 0.6]  # not measured again after a resume
    assert resumed.train_samples == [8, 8, 8]


def test_bad_arguments_and_states():
    with pytest.raises(TypeError, match=r"test_stream\[1\] must be an Experience, got int"):
        EvaluationPlugin([TEST[0], 3])
    with pytest.raises(TypeError, match=r"loggers\[0\] must be a Logger, got function"):
        EvaluationPlugin(TEST, loggers=[lambda event, record: None])
    with pytest.raises(TypeError, match="initial_eval must be a bool, got int"):
        EvaluationPlugin(TEST, initial_eval=1)
    with pytest.raises(KeyError, match=r"missing \['memory'\], unexpected \['extra'\]"):
        state = EvaluationPlugin(TEST).state_dict()
        del state["memory"]
        EvaluationPlugin(TEST).load_state_dict({**state, "extra": 1})


def test_without_a_test_stream_nothing_is_evaluated():
    evaluator = EvaluationPlugin()
    model = Lookup()
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=2,
                     evaluator=evaluator)
    strategy.train(TRAIN[0])
    report = evaluator.report()
    assert report["accuracy_matrix"] == [] and report["average_accuracy"] is None
    assert report["train_loss"] == [pytest.approx((3 * RIGHT + WRONG) / 4)]
