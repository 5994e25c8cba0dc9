"""`clreplay run --nproc N` and `torchrun ... -m clreplay run`: the same results as one process."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from processes import descendants, env_with, events, free_port, kill_all, wait_for

from clreplay.cli import main
from clreplay.launch import LaunchError

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
    """Train, then launch, in one process: the ``single`` run trained in this process
    (autograd ran here) before ``--nproc 2`` starts its processes, spawned."""
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


def _torchrun(args, env):
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rank_of(pid):
    """The RANK torchrun gave process ``pid`` (None if none)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    ranks = [item[5:] for item in environ if item.startswith(b"RANK=")]
    return int(ranks[0]) if ranks else None


def test_torchrun_max_restarts_resumes_from_the_checkpoint_by_itself_when_a_rank_dies(tmp_path):
    ck, out = tmp_path / "ck", tmp_path / "out"
    # A fresh store for each restart: with the store torchrun's agent shares, a restarted rank
    # can read the address its killed predecessor published (pytorch/pytorch#135712).
    env = env_with(tmp_path / "tmp", TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")
    process = _torchrun(["--standalone", "--nproc-per-node", "2", "--max-restarts", "1", "--monitor-interval",
                         "0.1", "-m", "clreplay", *RUN, "--epochs", "40", "--checkpoint-dir", str(ck),
                         "--output", str(out)], env)
    try:
        wait_for(lambda: events(out).count("experience_start") >= 2, 120, "the second experience",
                 process=process)
        rank1 = [pid for pid in descendants(process.pid) if _rank_of(pid) == 1]
        assert len(rank1) == 1
        os.kill(rank1[0], signal.SIGKILL)
        stdout, err = process.communicate(timeout=180)
    finally:
        kill_all(process)
    assert process.returncode == 0, err[-3000:]
    assert stdout.count("\nfinal average accuracy") == 1  # rank 0 prints, alone
    assert f"resumed from {ck / 'checkpoint.pt'}: 1 of 2 experiences already trained" in stdout
    results = _results(out)
    assert results["config"]["world_size"] == 2 and len(results["accuracy_matrix"]) == 2
    assert [e for e in _events(out) if e == "run_start"] == ["run_start"] * 2  # the restart resumed


def test_two_torchrun_nodes_on_loopback_make_one_job_of_world_size_2(tmp_path, single):
    """Two machines, simulated: two torchrun agents meet at a c10d rendezvous on 127.0.0.1,
    one process each; one job, one results.json."""
    env = env_with(tmp_path / "tmp", GLOO_SOCKET_IFNAME="lo")  # loopback only
    port = free_port()
    nodes = [_torchrun(["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                        "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "two-nodes",
                        "--rdzv-conf", f"is_host={node == 0},join_timeout=60", "--local-addr", "127.0.0.1",
                        "-m", "clreplay", *RUN, "--output", str(tmp_path / "out")], env) for node in (0, 1)]
    try:
        outputs = [node.communicate(timeout=180) for node in nodes]
    finally:
        for node in nodes:
            kill_all(node)
    assert [node.returncode for node in nodes] == [0, 0], [err[-2000:] for _, err in outputs]
    assert sum(stdout.count("\nfinal average accuracy") for stdout, _ in outputs) == 1
    results = _results(tmp_path / "out")
    assert results["config"]["world_size"] == 2
    assert results["accuracy_matrix"] == single["accuracy_matrix"]


def test_a_rank_stopped_by_bad_input_says_what_one_process_says_others_name_the_rank_and_how_to_resume(
        tmp_path, capsys, monkeypatch):
    import clreplay.run as run

    def failing(exception):
        def launch(*args, **kwargs):
            raise LaunchError("rank 0 of 2 failed: ...; the other ranks were stopped", 0, "Traceback: ...",
                              exception)
        return launch

    monkeypatch.setattr(run, "launch", failing(ValueError("checkpoint 'ck' was saved by another run")))
    assert main(RUN + ["--nproc", "2", "--checkpoint-dir", str(tmp_path / "ck")]) == 2
    assert capsys.readouterr().err == "clreplay run: error: checkpoint 'ck' was saved by another run\n"
    monkeypatch.setattr(run, "launch", failing(MemoryError()))
    assert main(RUN + ["--nproc", "2", "--checkpoint-dir", str(tmp_path / "ck")]) == 1
    assert capsys.readouterr().err.startswith(
        "clreplay run: error: rank 0 of 2 failed: ...; the other ranks were stopped; nothing was saved yet: the "
        "same command starts again\nrank 0's traceback:\n")
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "checkpoint.pt").touch()  # what the launch saved before it stopped
    assert main(RUN + ["--nproc", "2", "--checkpoint-dir", str(tmp_path / "ck")]) == 1
    assert capsys.readouterr().err == (
        "clreplay run: error: rank 0 of 2 failed: ...; the other ranks were stopped; run the same command to "
        f"resume from the last checkpoint in {str(tmp_path / 'ck')!r} (with any number of processes)\n"
        "rank 0's traceback:\nTraceback: ...\n")
    assert main(RUN + ["--nproc", "2"]) == 1
    assert "stopped; nothing was saved (give --checkpoint-dir to make a run resumable)" in capsys.readouterr().err


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
