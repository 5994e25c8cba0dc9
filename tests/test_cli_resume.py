"""A `clreplay run` killed with SIGKILL and started again ends exactly like an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from clreplay.checkpoint import CHECKPOINT_FILENAME, read_checkpoint
from clreplay.cli import main

# Enough epochs that the run is still training when the test sees the first
# checkpoint and kills it (an experience takes tens of milliseconds).
ARGS = ["--epochs", "6", "--n-experiences", "5", "--mem-size", "60", "--hidden", "64",
        "--policy", "class", "--seed", "7"]


def command(out, checkpoints):
    return [sys.executable, "-m", "clreplay", "run", *ARGS,
            "--output", str(out), "--checkpoint-dir", str(checkpoints)]


# One thread each: the two runs share the cores without thrashing, and every run
# computes with the same thread count (part of what makes floats reproducible).
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def start(out, checkpoints):
    return subprocess.Popen(command(out, checkpoints), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_then_resume_gives_the_same_results(tmp_path, capsys):
    # The reference run goes on beside the one that is killed (two cores, half the wait).
    reference = start(tmp_path / "ref_out", tmp_path / "ref_ck")
    killed = start(tmp_path / "out", tmp_path / "ck")
    first_checkpoint = tmp_path / "ck" / CHECKPOINT_FILENAME
    deadline = time.monotonic() + 120
    # A run saves its untrained state first: wait for one after an experience.
    while not (first_checkpoint.exists() and read_checkpoint(first_checkpoint)["next_experience"] >= 1):
        assert killed.poll() is None, killed.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.002)
    os.kill(killed.pid, signal.SIGKILL)
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL  # killed, not finished
    assert not (tmp_path / "out" / "results.json").exists()
    done_before_kill = read_checkpoint(first_checkpoint)["next_experience"]
    assert 1 <= done_before_kill < 5

    resumed = subprocess.run(command(tmp_path / "out", tmp_path / "ck"),
                             capture_output=True, text=True, timeout=300, env=ENV)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {first_checkpoint}: {done_before_kill} of 5 experiences" in resumed.stdout
    ref_stdout, ref_stderr = reference.communicate(timeout=300)
    assert reference.returncode == 0, ref_stderr

    got = json.loads((tmp_path / "out" / "results.json").read_text())
    want = json.loads((tmp_path / "ref_out" / "results.json").read_text())
    assert len(want["accuracy_matrix"]) == 5
    assert got["accuracy_matrix"] == want["accuracy_matrix"]
    # Beyond the accuracies: the final weights and memory are the same bits.
    got_state = read_checkpoint(first_checkpoint)["strategy"]
    want_state = read_checkpoint(tmp_path / "ref_ck" / CHECKPOINT_FILENAME)["strategy"]
    for name, tensor in want_state["model"].items():
        assert torch.equal(got_state["model"][name], tensor), name
    got_memory = got_state["plugins"][0]["storage_policy"]
    want_memory = want_state["plugins"][0]["storage_policy"]
    assert [key for key, _ in got_memory["groups"]] == [key for key, _ in want_memory["groups"]]
    for (_, a), (_, b) in zip(got_memory["groups"], want_memory["groups"]):
        assert torch.equal(a, b)  # the same rows of the store, in the same order
    for name, column in want_memory["store"]["columns"].items():
        assert torch.equal(got_memory["store"]["columns"][name], column), name

    # The same folder with another configuration: refused before any training.
    other = command(tmp_path / "out", tmp_path / "ck")[3:]
    other[other.index("60")] = "80"
    assert main(other) == 2
    assert "mem_size: saved 60, now 80" in capsys.readouterr().err
