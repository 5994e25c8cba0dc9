"""clreplay.launch: N processes on torch's elastic agent, spawned (never forked), failures named."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta

import pytest
import torch

from clreplay import distributed as idist
from clreplay.launch import LaunchError, launch

#: Set after the import: a forked process would inherit the new value, a spawned one
#: imports this module afresh and reads the old one.
MARKER = "as imported"


def _rank_and_marker(x):
    return idist.get_rank(), idist.get_world_size(), torch.get_num_threads(), MARKER, x, os.getppid()


def _fails_on_rank_one():
    if idist.get_rank() == 1:
        raise ValueError("rank one is broken")
    idist.barrier()  # rank 0 waits for a peer that is gone


def _rank_one_dies():
    if idist.get_rank() == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    idist.barrier()


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """A temporary folder of the test's own, where the launch keeps its files."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_bad_arguments_are_refused_before_any_process_starts():
    with pytest.raises(ValueError, match="nproc must be a positive int, got 0"):
        launch(print, 0)
    with pytest.raises(ValueError, match="max_restarts must be a non-negative int, got -1"):
        launch(print, 2, max_restarts=-1)
    with pytest.raises(ValueError, match="timeout must be a positive datetime.timedelta, got 30"):
        launch(print, 2, timeout=30)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"nproc must be at most the number of GPUs \(0\) on "
                                             r"device 'cuda', got 2"):
            launch(print, 2, device="cuda")


def test_a_process_that_trained_launches_spawned_processes_and_gets_their_results(private_tmp):
    global MARKER
    model = torch.nn.Linear(3, 2)  # autograd runs here first: fork-based launchers break then
    model(torch.randn(4, 3)).sum().backward()
    assert model.weight.grad is not None
    MARKER = "changed by the parent"
    try:
        results = launch(_rank_and_marker, 2, "arg", threads=1, timeout=timedelta(seconds=60))
    finally:
        MARKER = "as imported"
    assert [r[:5] for r in results] == [(0, 2, 1, "as imported", "arg"), (1, 2, 1, "as imported", "arg")]
    assert results[0][5] == results[1][5] == os.getpid()  # our children, started by the agent
    assert list(private_tmp.iterdir()) == []  # nothing left behind


def test_a_rank_that_raises_stops_the_launch_naming_it_with_its_traceback(private_tmp):
    with pytest.raises(LaunchError, match=r"(?s)^rank 1 of 2 failed: ValueError: rank one is broken; the "
                                          r"other ranks were stopped\nrank 1's traceback:\n.*in _fails_on_"
                                          r"rank_one\n.*ValueError: rank one is broken$") as info:
        launch(_fails_on_rank_one, 2, threads=1, timeout=timedelta(seconds=60))
    assert info.value.rank == 1
    assert type(info.value.exception) is ValueError and info.value.exception.args == ("rank one is broken",)
    assert list(private_tmp.iterdir()) == []


def test_a_rank_killed_by_sigkill_stops_the_launch_in_bounded_time_naming_it(private_tmp):
    start = time.monotonic()
    with pytest.raises(LaunchError, match=r"^rank 1 of 2 (\(pid \d+\) was killed by SIGKILL|died without "
                                          r"an error \(killed by a signal, or it crashed\)); the other "
                                          r"ranks were stopped$") as info:
        launch(_rank_one_dies, 2, threads=1, timeout=timedelta(seconds=60))
    assert info.value.rank == 1
    assert time.monotonic() - start < 30  # not the 60 s of the collectives' timeout
    assert list(private_tmp.iterdir()) == []


class _Reported:
    """What torch's ChildFailedError tells of the failure the agent saw first."""

    def __init__(self, rank, exitcode, pid=77):
        self.failure = type("Failure", (), {"exitcode": exitcode, "pid": pid})()
        self.rank = rank

    def get_first_failure(self):
        return self.rank, self.failure


def test_the_root_cause_is_a_real_error_first_then_a_silent_death_then_a_lost_peer(tmp_path):
    from clreplay.launch import _failure, _read_records

    lost = {"kind": "collective", "time": 5.0, "error": "RuntimeError: Connection closed by peer"}
    (tmp_path / "rank0.json").write_text(json.dumps(lost))
    (tmp_path / "rank1.json").write_text('{"kind": "err')  # torn: never read as a record
    records = _read_records(str(tmp_path))
    assert records == {0: lost}
    # Rank 1 left no record: it died without raising, whatever the agent saw first.
    assert str(_failure(_Reported(0, 1), records, 2)) == (
        "rank 1 of 2 died without an error (killed by a signal, or it crashed); the other ranks were stopped")
    assert str(_failure(_Reported(1, -9), records, 2)) == (
        "rank 1 of 2 (pid 77) was killed by SIGKILL; the other ranks were stopped")
    records[1] = {"kind": "interrupted", "time": 4.0, "error": "KeyboardInterrupt: "}
    assert str(_failure(_Reported(0, 1), records, 2)) == (
        "rank 0 of 2 lost its peers first: RuntimeError: Connection closed by peer; the other ranks were stopped")
    records[1] = {"kind": "error", "time": 6.0, "error": "ValueError: bad", "traceback": "Traceback: here"}
    error = _failure(_Reported(0, 1), records, 2)  # later than rank 0's, but the cause
    assert (error.rank, error.summary, error.traceback) == (
        1, "rank 1 of 2 failed: ValueError: bad; the other ranks were stopped", "Traceback: here")


def test_a_worker_that_asked_to_end_with_its_parent_ends_when_the_parent_is_killed(tmp_path):
    from processes import env_with, gone, wait_for

    armed = tmp_path / "armed"
    worker = ("import pathlib, time, sys; from clreplay.launch import end_with_parent; "
              f"assert end_with_parent(); pathlib.Path({str(armed)!r}).touch(); time.sleep(120)")
    parent = ("import subprocess, sys, time; "
              f"p = subprocess.Popen([sys.executable, '-c', {worker!r}]); print(p.pid, flush=True); time.sleep(120)")
    process = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True,
                               env=env_with(tmp_path / "tmp"))
    try:
        pid = int(process.stdout.readline())
        wait_for(armed.exists, 60, "the worker to arm its parent-death signal", process=process)
        process.kill()  # SIGKILL: the parent can do nothing about its children
        process.wait(timeout=10)
        assert gone([pid], timeout=10) == []
    finally:
        process.kill()
