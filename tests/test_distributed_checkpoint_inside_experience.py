"""Checkpoints inside an experience over 2 CPU processes (gloo): stopped mid-epoch, resumed
on 2 processes, on 1 (2 -> 1) or from 1 onto 2 (1 -> 2), a run ends as if it never stopped.

One group of 2 forked processes runs every distributed part in a row; the single-process
parts run in the test's own process.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import torch

from clreplay import OnlineReplayPlugin, ReplayPlugin, StrategyPlugin
from clreplay import distributed as idist
from clreplay.benchmarks import class_incremental, make_synthetic
from clreplay.checkpoint import CheckpointEvery, load_checkpoint, read_checkpoint
from clreplay.evaluation import EvaluationPlugin
from clreplay.launch import launch
from clreplay.models import make_mlp
from clreplay.training import Naive

KINDS = ("offline", "online")
#: Stopped at the end of iteration 4 of experience 1's second epoch (7 batches an epoch:
#: 49 samples, global batch 8, the last batch holds 1); the last checkpoint (every 3
#: iterations of the experience: 3, 6, 9) was taken at its iteration 2.
KILL = (1, 1, 4)


class Killed(Exception):
    """What a SIGKILL does to the processes, in-process: training stops where it is."""


class KillAt(StrategyPlugin):
    """Stops training at the end of iteration ``iteration`` of epoch ``epoch`` of ``experience``."""

    def __init__(self, where):
        self.where = where

    def after_training_iteration(self, strategy, **kwargs):
        clock = strategy.clock
        if (clock.train_exp_counter, clock.train_exp_epochs, clock.train_epoch_iterations) == self.where:
            raise Killed


def build(kind, path, *, kill=None):
    train, test = make_synthetic(147, 8, 6, noise=3.0, seed=0)
    bench = class_incremental(train, test, 3, seed=0)
    model = make_mlp(8, 6, [16], seed=0)
    # The offline memory is read in cycles that carry over from one epoch to the next
    # (the batch source's state); online replay draws from the memory at every batch.
    replay = ReplayPlugin(24) if kind == "offline" else OnlineReplayPlugin(24, batch_size_mem=4)
    plugins = [replay, CheckpointEvery(path, 3), KillAt(kill or (-1, -1, -1))]
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9),
                     train_mb_size=8, train_epochs=2, eval_mb_size=16, plugins=plugins, seed=0,
                     evaluator=EvaluationPlugin(bench.test_stream),
                     distributed=idist.get_world_size() > 1)
    return bench, strategy


def stop(kind, path):
    """A run stopped at KILL, with its checkpoints in ``path``."""
    bench, strategy = build(kind, path, kill=KILL)
    with pytest.raises(Killed):
        strategy.train(bench.train_stream)


def finish(kind, path, *, resume=True):
    """A run resumed from ``path`` (or from the start, saving there) to the end: what it ended with."""
    bench, strategy = build(kind, path)
    start = 0
    if resume:
        start = load_checkpoint(strategy, path)
        assert start == 1 and strategy.resumes_inside_experience
    strategy.train(bench.train_stream[start:])
    policy = strategy.plugins[0].storage_policy
    memory = {key: policy.store.read("x", policy.store.rows_of(group)) for key, group in policy.ext_mem.items()}
    evaluator = strategy.evaluator
    return {"matrix": evaluator.accuracy_matrix, "task_matrix": evaluator.task_accuracy_matrix,
            "train_loss": evaluator.train_loss, "samples": evaluator.train_samples,
            "weights": {k: v.clone() for k, v in strategy.model.state_dict().items()},
            "memory": memory}


def _two_processes(folder):
    folder = Path(folder)
    out = {}
    for kind in KINDS:
        stop(kind, folder / f"{kind}-two-two.pt")
        out[kind, "two-two"] = finish(kind, folder / f"{kind}-two-two.pt")
        stop(kind, folder / f"{kind}-two-one.pt")  # resumed by the test's process
        out[kind, "one-two"] = finish(kind, folder / f"{kind}-one-two.pt")  # saved by it
        out[kind, "two"] = finish(kind, folder / f"{kind}-two.pt", resume=False)
    torch.save(out, folder / f"rank{idist.get_rank()}.pt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inside")
    out = {}
    for kind in KINDS:
        out[kind, "one"] = finish(kind, folder / f"{kind}-one.pt", resume=False)
        stop(kind, folder / f"{kind}-one-two.pt")
        saved = read_checkpoint(folder / f"{kind}-one-two.pt")["strategy"]
        assert saved["in_progress"] is not None
        assert (saved["clock"]["train_exp_counter"], saved["clock"]["train_exp_epochs"],
                saved["clock"]["train_epoch_iterations"]) == (1, 1, 2)
    launch(_two_processes, 2, str(folder), threads=1,
                 timeout=timedelta(seconds=90))
    ranks = [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    for kind in KINDS:
        saved = read_checkpoint(folder / f"{kind}-two-one.pt")["strategy"]
        assert saved["in_progress"] is not None and saved["clock"]["train_epoch_iterations"] == 2
        out[kind, "two-one"] = finish(kind, folder / f"{kind}-two-one.pt")
    return out, ranks


@pytest.mark.parametrize("kind", KINDS)
def test_two_processes_stopped_mid_epoch_resume_on_two_to_the_bits_of_the_uninterrupted_run(runs, kind):
    _, ranks = runs
    for rank in ranks:
        resumed, uninterrupted = rank[kind, "two-two"], rank[kind, "two"]
        assert resumed["matrix"] == uninterrupted["matrix"]
        assert resumed["task_matrix"] == uninterrupted["task_matrix"]
        assert resumed["samples"] == uninterrupted["samples"]
        # The same steps in the same order on the same processes: the same bits.
        for name, value in uninterrupted["weights"].items():
            assert torch.equal(resumed["weights"][name], value), name
        assert list(resumed["memory"]) == list(uninterrupted["memory"])
        for key, x in uninterrupted["memory"].items():
            assert torch.equal(resumed["memory"][key], x)
        # The epoch's loss so far is every rank's, carried once through the checkpoint.
        assert resumed["train_loss"] == pytest.approx(uninterrupted["train_loss"], rel=1e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["two-one", "one-two"])
def test_a_run_stopped_mid_epoch_resumes_under_another_world_size_to_the_single_run_matrix(
        runs, kind, how):
    out, ranks = runs
    single = out[kind, "one"]
    resumed = out[kind, how] if how == "two-one" else ranks[0][kind, how]
    assert len(single["matrix"]) == 3
    assert ranks[0][kind, "two"]["matrix"] == single["matrix"]
    assert resumed["matrix"] == single["matrix"]
    assert resumed["task_matrix"] == single["task_matrix"]
    assert resumed["samples"] == single["samples"]
    assert resumed["train_loss"] == pytest.approx(single["train_loss"], rel=1e-5)
    for name, value in single["weights"].items():  # the same steps, up to float rounding
        torch.testing.assert_close(resumed["weights"][name], value, rtol=1e-5, atol=1e-6)
    # The memory holds the same samples (model-free decisions, the same batches).
    assert list(resumed["memory"]) == list(single["memory"])
    for key, x in single["memory"].items():
        assert torch.equal(resumed["memory"][key], x)
