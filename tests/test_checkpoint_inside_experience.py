"""Checkpoints inside an experience: a run stopped mid-epoch resumes exactly."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from cifar_files import write_cifar

from clreplay import (
    ClassBalancedStoragePolicy,
    HerdingSelectionStrategy,
    OnlineReplayPlugin,
    ReplayPlugin,
    StrategyPlugin,
)
from clreplay.benchmarks import split_digits
from clreplay.checkpoint import (
    CHECKPOINT_FILENAME,
    CheckpointEvery,
    load_checkpoint,
    read_checkpoint,
)
from clreplay.evaluation import EvaluationPlugin
from clreplay.models import make_mlp
from clreplay.training import Naive


class Killed(Exception):
    """What a SIGKILL does to the process, in-process: training stops where it is."""


class KillAt(StrategyPlugin):
    """Stops training at the end of iteration ``iteration`` of epoch ``epoch`` of ``experience``."""

    def __init__(self, experience, epoch, iteration):
        self.where = (experience, epoch, iteration)

    def after_training_iteration(self, strategy, **kwargs):
        clock = strategy.clock
        if (clock.train_exp_counter, clock.train_exp_epochs, clock.train_epoch_iterations) == self.where:
            raise Killed


def replay_plugins(model):
    return {
        "experience": lambda: [ReplayPlugin(80)],
        "class_herding": lambda: [ReplayPlugin(80, ClassBalancedStoragePolicy(
            {}, 80, selection_strategy=HerdingSelectionStrategy(model, "1")))],
        "batch_size_mem": lambda: [ReplayPlugin(80, batch_size_mem=7)],
        "online": lambda: [OnlineReplayPlugin(80, batch_size_mem=7)],
    }


def build(kind, path, *, kill=None):
    bench = split_digits()
    model = make_mlp(64, 10, [32], seed=0)
    plugins = replay_plugins(model)[kind]() + [CheckpointEvery(path, 3)]
    plugins.append(KillAt(*(kill or (-1, -1, -1))))  # the same plugins in every run
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                     train_mb_size=16, train_epochs=2, plugins=plugins, seed=3,
                     evaluator=EvaluationPlugin(bench.test_stream))
    return bench, strategy


@pytest.mark.parametrize("kind", ["experience", "class_herding", "batch_size_mem", "online"])
def test_a_run_stopped_mid_epoch_resumes_to_the_same_weights_memory_and_matrix(tmp_path, kind):
    bench, reference = build(kind, tmp_path / "ref.pt")
    for experience in bench.train_stream[:3]:
        reference.train(experience)

    # Stop at the 5th iteration of experience 1's second epoch: a checkpoint (every 3
    # iterations of the experience) was taken 0 to 2 iterations before, inside that epoch.
    bench, stopped = build(kind, tmp_path / "c.pt", kill=(1, 1, 5))
    with pytest.raises(Killed):
        for experience in bench.train_stream[:3]:
            stopped.train(experience)
    saved = read_checkpoint(tmp_path / "c.pt")["strategy"]
    clock = saved["clock"]
    assert saved["in_progress"] is not None and clock["train_exp_counter"] == 1
    assert clock["train_exp_epochs"] == 1 and 3 <= clock["train_epoch_iterations"] <= 5

    bench, resumed = build(kind, tmp_path / "c.pt")
    start = load_checkpoint(resumed, tmp_path / "c.pt")
    assert start == 1 and resumed.resumes_inside_experience
    for experience in bench.train_stream[start:3]:
        resumed.train(experience)
    for mine, theirs in zip(resumed.model.parameters(), reference.model.parameters()):
        assert torch.equal(mine, theirs)
    assert resumed.evaluator.accuracy_matrix == reference.evaluator.accuracy_matrix
    assert resumed.evaluator.train_loss == pytest.approx(reference.evaluator.train_loss, rel=1e-6)
    mine, theirs = resumed.plugins[0].storage_policy, reference.plugins[0].storage_policy
    assert list(mine.ext_mem) == list(theirs.ext_mem)
    for key in mine.ext_mem:
        assert torch.equal(mine.ext_mem[key].indices, theirs.ext_mem[key].indices)
    for name, column in theirs.store.columns.items():
        assert torch.equal(mine.store.columns[name][: mine.store.size], column[: theirs.store.size])


# ------------------------------------------------------------- the command line
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def command(archive, out, checkpoints):
    return [sys.executable, "-m", "clreplay", "run", "--benchmark", "split_cifar10", "--data", str(archive),
            "--n-experiences", "2", "--epochs", "2", "--batch-size", "4", "--mem-size", "12",
            "--width", "4", "--output", str(out), "--checkpoint-dir", str(checkpoints),
            "--checkpoint-every", "2"]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_resnet18_with_augmentation_killed_mid_experience_resumes_to_the_same_matrix(tmp_path):
    archive, _ = write_cifar(tmp_path / "data", "cifar10", packed=True, n_train=120, n_test=20)
    reference = subprocess.Popen(command(archive, tmp_path / "ref_out", tmp_path / "ref_ck"),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    killed = subprocess.Popen(command(archive, tmp_path / "out", tmp_path / "ck"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    path = tmp_path / "ck" / CHECKPOINT_FILENAME
    deadline = time.monotonic() + 180
    while True:  # the first checkpoint taken inside the second experience
        assert killed.poll() is None, killed.communicate()
        assert time.monotonic() < deadline, "no checkpoint inside an experience appeared"
        if path.exists():
            state = read_checkpoint(path)["strategy"]
            if state["in_progress"] is not None and state["clock"]["train_exp_counter"] == 1:
                break
        time.sleep(0.005)
    os.kill(killed.pid, signal.SIGKILL)
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL

    resumed = subprocess.run(command(archive, tmp_path / "out", tmp_path / "ck"),
                             capture_output=True, text=True, timeout=300, env=ENV)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout and "experience 2 from iteration" in resumed.stdout
    ref_out, ref_err = reference.communicate(timeout=300)
    assert reference.returncode == 0, ref_err
    got = json.loads((tmp_path / "out" / "results.json").read_text())
    want = json.loads((tmp_path / "ref_out" / "results.json").read_text())
    assert got["config"]["model"] == "resnet18" and got["accuracy_matrix"] == want["accuracy_matrix"]
