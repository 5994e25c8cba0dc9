"""Failures around a run that must end in one line saying what to do, never a traceback:
a full disk under each folder, unreadable or special checkpoint and config files, links
in the output folder. Nothing saved is lost: the last checkpoint stays intact and the
same command resumes to the results of a run that never failed."""

import builtins
import contextlib
import errno
import io
import json
import os
import signal

import pytest
import torch

import clreplay.evaluation.loggers.base as logger_base
import clreplay.evaluation.loggers.files as logger_files
import clreplay.run as run_module
from clreplay.checkpoint import CHECKPOINT_FILENAME
from clreplay.cli import main
from clreplay.locking import LOCK_FILENAME

ARGS = ["--epochs", "2", "--n-experiences", "3", "--hidden", "8", "--mem-size", "30", "--seed", "2"]
ENOSPC = "No space left on device"


@pytest.fixture(autouse=True)
def no_plots(monkeypatch):
    monkeypatch.setattr(run_module, "render_plots", lambda results, folder: [])


def run_cli(capsys, *args):
    code = main(["run", *ARGS, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def matrix(folder):
    return json.loads((folder / "results.json").read_text())["accuracy_matrix"]


@pytest.fixture
def reference(tmp_path, capsys):
    assert run_cli(capsys, "--output", str(tmp_path / "ref"))[0] == 0
    return matrix(tmp_path / "ref")


def left_in(folder):
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------ full disk
class FullDiskSave:
    """torch.save that fails at its ``at``-th call as on a full disk: half the bytes
    written, then torch's RuntimeError whose context is the OSError (what torch raises)."""

    def __init__(self, at, checkpoint):
        self.calls, self.at, self.checkpoint, self.real = 0, at, checkpoint, torch.save
        self.before = None

    def __call__(self, obj, f, *args, **kwargs):
        self.calls += 1
        if self.calls != self.at:
            return self.real(obj, f, *args, **kwargs)
        self.before = self.checkpoint.read_bytes() if self.checkpoint.exists() else None
        buffer = io.BytesIO()
        self.real(obj, buffer)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        try:
            raise OSError(errno.ENOSPC, ENOSPC)
        except OSError:  # torch's own error carries the OSError as its context only
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")  # noqa: B904


@pytest.mark.parametrize("at", [1, 2, 5], ids=["untrained-save", "inside-experience-1", "later"])
def test_a_full_disk_under_checkpoint_dir_is_one_line_and_the_same_command_resumes(
        tmp_path, capsys, monkeypatch, reference, at):
    out, ck = tmp_path / "out", tmp_path / "ck"
    save = FullDiskSave(at, ck / CHECKPOINT_FILENAME)
    monkeypatch.setattr(torch, "save", save)
    args = ("--output", str(out), "--checkpoint-dir", str(ck), "--checkpoint-every", "4")
    code, _, err = run_cli(capsys, *args)
    assert code == 1
    if save.before is None:
        tail = "no checkpoint was saved yet: make room there and run the same command to start again"
    else:
        tail = (f"the last checkpoint, '{ck}/{CHECKPOINT_FILENAME}', is intact: make room and run the "
                "same command to resume")
    assert err == f"clreplay run: error: --checkpoint-dir '{ck}': writing the checkpoint failed: {ENOSPC}; {tail}\n"
    if save.before is not None:  # the previous save, byte for byte
        assert (ck / CHECKPOINT_FILENAME).read_bytes() == save.before
    assert left_in(ck) == ([CHECKPOINT_FILENAME] if save.before is not None else [])  # no temporary, no lock
    assert LOCK_FILENAME not in left_in(out)
    monkeypatch.setattr(torch, "save", save.real)
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    assert matrix(out) == reference


class FullDiskFiles:
    """``open`` for the loggers' files whose writes fail with ENOSPC once ``budget``
    bytes are written (all files together)."""

    def __init__(self, budget):
        self.budget = budget

    def __call__(self, path, *args, **kwargs):
        stream = builtins.open(path, *args, **kwargs)
        owner, real_write = self, stream.write

        def write(text):
            if owner.budget < len(text):
                raise OSError(errno.ENOSPC, ENOSPC)
            owner.budget -= len(text)
            return real_write(text)

        stream.write = write
        return stream


@pytest.mark.parametrize("budget", [300, 3000])
def test_a_full_disk_under_output_names_the_folder_and_the_run_resumes(
        tmp_path, capsys, monkeypatch, reference, budget):
    out, ck = tmp_path / "out", tmp_path / "ck"
    full = FullDiskFiles(budget)  # one budget for every logger's files
    for module in (logger_base, logger_files):
        monkeypatch.setattr(module, "open", full, raising=False)
    code, _, err = run_cli(capsys, "--output", str(out), "--checkpoint-dir", str(ck))
    assert code == 1
    assert err == (f"clreplay run: error: --output '{out}': writing the run's logs and results failed: {ENOSPC}; "
                   f"the last checkpoint, '{ck}/{CHECKPOINT_FILENAME}', is intact: make room and run the "
                   "same command to resume\n")
    for module in (logger_base, logger_files):
        monkeypatch.delattr(module, "open")
    code, _, err = run_cli(capsys, "--output", str(out), "--checkpoint-dir", str(ck))
    assert code == 0, err
    assert matrix(out) == reference
    rows = [line.split(",")[:2] for line in (out / "epochs.csv").read_text().splitlines()[1:]]
    assert len(rows) == len({tuple(r) for r in rows}) == 6  # each epoch once: the cut logs continue


def test_a_full_disk_without_a_checkpoint_folder_says_nothing_was_saved(tmp_path, capsys, monkeypatch):
    full = FullDiskFiles(500)
    for module in (logger_base, logger_files):
        monkeypatch.setattr(module, "open", full, raising=False)
    code, _, err = run_cli(capsys, "--output", str(tmp_path / "out"))
    assert code == 1
    assert err.endswith(f"{ENOSPC}; nothing was saved (no --checkpoint-dir): make room and run the "
                        "command again\n")


def test_a_short_write_of_the_memory_mapped_memory_names_memmap_dir(tmp_path, capsys, monkeypatch, reference):
    out, ck, mm = tmp_path / "out", tmp_path / "ck", tmp_path / "mm"
    real, calls = os.pwritev, {"n": 0}

    def short(fd, buffers, offset):
        calls["n"] += 1
        written = real(fd, buffers, offset)
        return written - 1 if calls["n"] == 3 else written  # the disk filled up mid-row

    monkeypatch.setattr(os, "pwritev", short)
    args = ("--output", str(out), "--checkpoint-dir", str(ck), "--memmap-dir", str(mm))
    code, _, err = run_cli(capsys, *args)
    assert code == 1
    assert err.startswith(f"clreplay run: error: --memmap-dir '{mm}': writing the memory-mapped replay memory "
                          f"failed: short write to {mm}/")
    assert err.endswith(f"the last checkpoint, '{ck}/{CHECKPOINT_FILENAME}', is intact: make room and run "
                        "the same command to resume\n")
    monkeypatch.setattr(os, "pwritev", real)
    assert run_cli(capsys, *args)[0] == 0
    assert matrix(out) == reference and left_in(mm) == []


# --------------------------------------------------- unreadable and special files
def test_an_unreadable_checkpoint_names_the_file_and_the_flag(tmp_path, capsys, monkeypatch):
    ck = tmp_path / "ck"
    assert run_cli(capsys, "--checkpoint-dir", str(ck))[0] == 0
    target = ck / CHECKPOINT_FILENAME
    real = builtins.open

    def denied(path, *args, **kwargs):  # what chmod 000 does for anyone but root
        if os.fspath(path) == os.fspath(target):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denied)
    code, out, err = run_cli(capsys, "--checkpoint-dir", str(ck))
    assert code == 2 and out == ""
    assert err == (f"clreplay run: error: --checkpoint-dir '{ck}': checkpoint '{target}' cannot be read: "
                   "permission denied (check the file's permissions and owner)\n")


def test_unreadable_data_names_the_flag_and_the_file(tmp_path, capsys, monkeypatch):
    import numpy as np

    path = tmp_path / "d.npz"
    y = np.arange(8) % 4
    np.savez(path, x_train=np.zeros((8, 2), np.float32), y_train=y, x_test=np.zeros((4, 2), np.float32),
             y_test=y[:4])
    real = os.open

    def denied(name, *args, **kwargs):
        if os.fspath(name) == os.fspath(path):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(name))
        return real(name, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    code = main(["run", "--benchmark", "split_npz", "--data", str(path), "--n-experiences", "2"])
    assert code == 2
    assert capsys.readouterr().err == (f"clreplay run: error: --data '{path}': npz file '{path}' cannot be read: "
                                       "permission denied (check the file's permissions and owner)\n")


class Blocked(BaseException):
    """Raised by the alarm when a read blocks (no handler below catches it)."""


@contextlib.contextmanager
def within(seconds):
    def expired(signum, frame):
        raise Blocked(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not hasattr(signal, "SIGALRM"), reason="needs FIFOs")
def test_a_fifo_as_checkpoint_or_config_is_refused_without_blocking(tmp_path, capsys):
    ck = tmp_path / "ck"
    ck.mkdir()
    os.mkfifo(ck / CHECKPOINT_FILENAME)
    with within(30):  # before: torch.load waited for a writer, forever
        code, _, err = run_cli(capsys, "--checkpoint-dir", str(ck))
    assert code == 2
    assert err == (f"clreplay run: error: checkpoint '{ck}/{CHECKPOINT_FILENAME}' must be a regular file, got a "
                   "FIFO (named pipe), which is never read (it could block or never end); name a regular "
                   "file instead\n")
    os.mkfifo(tmp_path / "c.toml")
    with within(30):
        code, _, err = run_cli(capsys, "--config", str(tmp_path / "c.toml"))
    assert code == 2
    assert err.startswith(f"clreplay run: error: config file '{tmp_path}/c.toml' must be a regular file, got a FIFO")


def test_a_config_file_that_is_not_utf8_names_the_file(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_bytes("epochs = 1\n# r\xe9sum\xe9\n".encode("latin-1"))
    code, _, err = run_cli(capsys, "--config", str(path))
    assert code == 2
    assert err == (f"clreplay run: error: config file '{path}' must be UTF-8 text (TOML), got byte 0xe9 at "
                   "offset 14, which is not UTF-8\n")


# ------------------------------------------------------------- links in --output
def test_overwrite_removes_links_in_output_and_never_what_they_point_to(tmp_path, capsys):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (elsewhere / "board").mkdir(parents=True)
    (elsewhere / "board" / "precious").write_text("keep me")
    (elsewhere / "results.json").write_text("mine")
    out.mkdir()
    os.symlink(elsewhere / "board", out / "tensorboard")
    os.symlink(elsewhere / "results.json", out / "results.json")
    os.symlink(elsewhere / "missing", out / "log.txt")  # a dangling link
    code, _, err = run_cli(capsys, "--output", str(out), "--overwrite")
    assert code == 0, err
    assert (elsewhere / "board" / "precious").read_text() == "keep me"
    assert (elsewhere / "results.json").read_text() == "mine"
    assert not (out / "tensorboard").exists() and not (out / "results.json").is_symlink()
    assert not (elsewhere / "missing").exists()


def test_a_resumed_run_removes_a_link_put_in_a_log_file_s_place(tmp_path, capsys, monkeypatch):
    out, ck, elsewhere = tmp_path / "out", tmp_path / "ck", tmp_path / "elsewhere.txt"
    assert run_cli(capsys, "--output", str(out), "--checkpoint-dir", str(ck), "--n-experiences", "2")[0] == 0
    (out / "results.json").unlink()
    elsewhere.write_text("x" * 10_000)
    (out / "log.txt").unlink()
    os.symlink(elsewhere, out / "log.txt")
    code, _, err = run_cli(capsys, "--output", str(out), "--checkpoint-dir", str(ck), "--n-experiences", "2")
    assert code == 0, err
    assert elsewhere.read_text() == "x" * 10_000  # never truncated through the link
    assert not (out / "log.txt").is_symlink()


# ------------------------------------------- interruptions outside the training loop
def test_ctrl_c_while_writing_the_results_says_the_checkpoint_holds_the_whole_run(tmp_path, capsys, monkeypatch):
    out, ck = tmp_path / "out", tmp_path / "ck"

    def interrupted(results, folder):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "write_results", interrupted)
    code, _, err = run_cli(capsys, "--output", str(out), "--checkpoint-dir", str(ck))
    assert code == 130
    assert err == (f"clreplay run: interrupted after training, while writing the results; {ck}/{CHECKPOINT_FILENAME} "
                   "holds the whole run: run the same command to write them\n")
    monkeypatch.undo()
    monkeypatch.setattr(run_module, "render_plots", lambda results, folder: [])
    code, stdout, _ = run_cli(capsys, "--output", str(out), "--checkpoint-dir", str(ck))
    assert code == 0 and "3 of 3 experiences already trained" in stdout
    assert (out / "results.json").exists() and LOCK_FILENAME not in left_in(out)


def test_ctrl_c_before_training_says_nothing_was_saved(tmp_path, capsys, monkeypatch):
    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # during the untrained state's save

    monkeypatch.setattr(run_module, "save_checkpoint", killed)
    code, _, err = run_cli(capsys, "--checkpoint-dir", str(tmp_path / "ck"))
    assert code == 130
    assert err == "clreplay run: interrupted before training started; nothing was saved (no checkpoint)\n"
