"""`clreplay run --nproc 2` under faults: a rank killed, Ctrl-C, the launcher killed.

Each test starts the command line in a subprocess with a private temporary folder,
injects the fault once training is under way (the second experience started: the
first one is in the checkpoint), and checks what the user sees (the exit status and one
message naming the rank and how to resume), that no process is left behind, that no
file of the launch is left in the temporary folder, and that the same command resumes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from processes import (
    clreplay,
    descendants,
    env_with,
    events,
    gone,
    kill_all,
    spawned_workers,
    wait_for,
)

#: Long enough (30 epochs of each of 5 experiences) that the faults land mid-run.
ARGS = ["run", "--epochs", "30", "--hidden", "32"]
#: Names of what torch's launcher and spawn, or clreplay's, would leave in the temporary folder.
LAUNCH_FILES = ("clreplay-launch-", "pytorch-errorfile-", "torchelastic_")


def _launch_files(tmp: Path):
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith(LAUNCH_FILES))


def _run_starts(out: Path):
    path = out / "events.jsonl"
    return [json.loads(line)["start"] for line in path.read_text().splitlines()
            if json.loads(line)["event"] == "run_start"]


@pytest.fixture
def folders(tmp_path):
    return tmp_path / "ck", tmp_path / "out", env_with(tmp_path / "tmp"), tmp_path / "tmp"


def _started(args, env, *, experiences=2, **kwargs):
    """The command started, once it has begun ``experiences`` experiences."""
    out = Path(args[args.index("--output") + 1])
    before = len(events(out))
    process = clreplay(args, env, **kwargs)
    try:
        wait_for(lambda: events(out)[before:].count("experience_start") >= experiences, 120,
                 f"{experiences} experience(s) to start", process=process)
    except BaseException:
        kill_all(process)
        raise
    return process


def test_a_killed_rank_stops_the_job_naming_it_and_the_same_command_resumes_on_one_process(folders):
    ck, out, env, tmp = folders
    args = ARGS + ["--checkpoint-dir", str(ck), "--output", str(out)]
    process = _started(args + ["--nproc", "2"], env)
    try:
        workers = descendants(process.pid)
        rank0 = int((ck / ".clreplay.lock").read_text())  # rank 0 holds the folders
        assert rank0 in workers
        os.kill(rank0, signal.SIGKILL)
        _, err = process.communicate(timeout=60)
    finally:
        kill_all(process)
    assert process.returncode == 1
    assert re.fullmatch(
        r"clreplay run: error: rank 0 of 2 (\(pid \d+\) was killed by SIGKILL|died without an error \(killed "
        r"by a signal, or it crashed\)); the other ranks were stopped; run the same command to resume "
        rf"from the last checkpoint in '{re.escape(str(ck))}' \(with any number of processes\)\n", err), err
    assert gone(workers) == []
    assert _launch_files(tmp) == []
    resumed = clreplay(args + ["--nproc", "1"], env)
    stdout, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert f"resumed from {ck / 'checkpoint.pt'}: " in stdout
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["world_size"] == 1 and len(results["accuracy_matrix"]) == 5
    assert _run_starts(out)[-1] >= 1  # it did not start over


def test_ctrl_c_says_what_was_saved_and_a_killed_launcher_takes_its_ranks_and_files_with_it(folders):
    ck, out, env, tmp = folders
    args = ARGS + ["--checkpoint-dir", str(ck), "--output", str(out), "--nproc", "2"]
    process = _started(args, env, start_new_session=True)
    try:
        workers = descendants(process.pid)
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole process group
        _, err = process.communicate(timeout=60)
    finally:
        kill_all(process)
    assert process.returncode == 130
    assert re.fullmatch(rf"clreplay run: interrupted during experience \d of 5; {re.escape(str(ck / 'checkpoint.pt'))} "
                        r"holds the \d finished experience\(s\): run the same command to resume\n", err), err
    assert gone(workers) == [] and _launch_files(tmp) == []

    process = _started(args, env, experiences=1, start_new_session=True)  # the same command resumes...
    try:
        workers = descendants(process.pid)
        assert len(workers) >= 2 and _run_starts(out)[-1] >= 1
        os.kill(process.pid, signal.SIGKILL)  # ...and its launcher is killed
        process.communicate(timeout=60)
    finally:
        kill_all(process)
    assert gone(workers) == []  # the ranks end with their launcher
    wait_for(lambda: _launch_files(tmp) == [], 15, "the launch folder to be removed")


def test_ctrl_c_while_the_processes_start_stops_them_with_one_line(folders):
    ck, out, env, tmp = folders
    args = ARGS + ["--checkpoint-dir", str(ck), "--output", str(out), "--nproc", "2"]
    process = clreplay(args, env, start_new_session=True)
    try:  # the ranks are spawned: Python and torch are still being imported in them
        wait_for(lambda: len(spawned_workers(process.pid)) == 2, 120, "the ranks to be spawned", process=process)
        # (Not within the few milliseconds the launcher takes to hand a new process its
        # start-up data: a rank cut off there cannot start, and says so.)
        time.sleep(0.5)
        workers = descendants(process.pid)
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        kill_all(process)
    assert process.returncode == 130
    assert re.fullmatch(r"clreplay run: interrupted[^\n]*\n", err), err  # no traceback of an import
    assert gone(workers) == [] and _launch_files(tmp) == []
