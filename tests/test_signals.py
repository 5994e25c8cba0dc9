"""SIGTERM (a cluster pre-empting a job) ends `clreplay run` like Ctrl-C: a message saying what
the checkpoint holds, the folders' locks released, exit status 143, and the same command
resumes to the results of a run that was never stopped."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from clreplay.checkpoint import CHECKPOINT_FILENAME, read_checkpoint
from clreplay.signals import SIGTERM_EXIT_STATUS, Terminated, sigterm_interrupts

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")

ARGS = ["--epochs", "4", "--n-experiences", "3", "--mem-size", "60", "--hidden", "32", "--seed", "5",
        "--checkpoint-every", "5"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def command(folder):
    return [sys.executable, "-m", "clreplay", "run", *ARGS, "--output", str(folder / "out"),
            "--checkpoint-dir", str(folder / "ck")]


def test_sigterm_interrupts_once_then_lets_the_clean_up_finish():
    def outside(signum, frame):  # reached only if the block's handler is missing
        raise AssertionError("SIGTERM reached the handler outside the block")

    before = signal.signal(signal.SIGTERM, outside)
    cleaned = False
    try:
        with pytest.raises(Terminated) as info:
            with sigterm_interrupts():
                try:
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(5)  # interrupted by the handler
                finally:
                    os.kill(os.getpid(), signal.SIGTERM)  # a second one: ignored while unwinding
                    cleaned = True
        assert signal.getsignal(signal.SIGTERM) is outside  # restored on exit
    finally:
        signal.signal(signal.SIGTERM, before)
    assert cleaned and info.value.exit_status == SIGTERM_EXIT_STATUS == 143
    assert isinstance(info.value, KeyboardInterrupt) and info.value.message == "terminated (SIGTERM)"


def test_sigterm_during_a_run_ends_like_ctrl_c_and_the_same_command_resumes(tmp_path):
    reference = subprocess.Popen(command(tmp_path / "ref"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=ENV)
    stopped = subprocess.Popen(command(tmp_path / "run"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=ENV)
    path = tmp_path / "run" / "ck" / CHECKPOINT_FILENAME
    deadline, first = time.monotonic() + 120, None
    while True:  # the untrained state is saved first; a new file (inode) is a save inside training
        assert stopped.poll() is None, stopped.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        inode = path.stat().st_ino if path.exists() else None
        first = first or inode
        if inode is not None and inode != first:
            break
        time.sleep(0.002)
    stopped.send_signal(signal.SIGTERM)
    _, err = stopped.communicate(timeout=60)
    assert stopped.returncode == 143, err
    assert err.startswith("clreplay run: terminated (SIGTERM) during experience "), err
    assert read_checkpoint(path)["strategy"]["clock"]["train_iterations"] > 0
    assert err.endswith(f"of 3; {path} holds the run up to its last save (every 5 iterations): run the same "
                        "command to resume\n"), err
    # Nothing left behind: no lock, no temporary file.
    assert sorted(p.name for p in (tmp_path / "run" / "ck").iterdir()) == [CHECKPOINT_FILENAME]
    assert not any(p.name.startswith(".") for p in (tmp_path / "run" / "out").iterdir())

    resumed = subprocess.run(command(tmp_path / "run"), capture_output=True, text=True, timeout=300, env=ENV)
    assert resumed.returncode == 0, resumed.stderr
    assert reference.wait(timeout=300) == 0, reference.communicate()
    got, want = (json.loads((tmp_path / d / "out" / "results.json").read_text())["accuracy_matrix"]
                 for d in ("run", "ref"))
    assert got == want and len(got) == 3
