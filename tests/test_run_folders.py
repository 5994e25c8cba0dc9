"""The folders of a run: locked while it lasts, never two runs' files mixed, logs of a resumed
run cut back to what its checkpoint covers, and Ctrl-C leaving a checkpoint that resumes."""

import csv
import json
import os
import subprocess

import pytest

import clreplay.run as run_module
from clreplay.checkpoint import CHECKPOINT_FILENAME, read_checkpoint
from clreplay.cli import main
from clreplay.locking import LOCK_FILENAME, FolderLockedError, lock_folder
from clreplay.run import RunConfig, run_experiment

BUILD, SAVE = run_module.build_strategy, run_module.save_checkpoint
FAST = ["--epochs", "2", "--n-experiences", "3", "--hidden", "8", "--mem-size", "30"]


@pytest.fixture(autouse=True)
def no_plots(monkeypatch):
    """Drawing the PNGs costs more than these tiny runs; no test here looks at them."""
    monkeypatch.setattr(run_module, "render_plots", lambda results, folder: [])


def run_cli(capsys, *args):
    code = main(["run", *FAST, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------- locking
@pytest.mark.parametrize("flag", ["--checkpoint-dir", "--output"])
def test_a_second_run_into_a_locked_folder_names_the_holder(tmp_path, capsys, flag):
    folder = tmp_path / "held"
    with lock_folder(folder, what="another"):  # this process plays the first run
        code, out, err = run_cli(capsys, flag, str(folder))
    assert code == 2 and out == ""
    assert err == (f"clreplay run: error: {flag} '{folder}' is in use by another clreplay run (PID "
                   f"{os.getpid()}, which holds '{folder}/{LOCK_FILENAME}'); wait for it to end, "
                   "or use another folder\n")
    assert list(folder.iterdir()) == []  # the lock went with its holder


def test_the_lock_of_a_dead_process_is_taken_over(tmp_path, capsys):
    dead = subprocess.Popen(["true"])
    dead.wait()
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / LOCK_FILENAME).write_text(f"{dead.pid}\n")  # left by a run killed with SIGKILL
    code, _, err = run_cli(capsys, "--checkpoint-dir", str(ck))
    assert code == 0, err
    assert sorted(p.name for p in ck.iterdir()) == [CHECKPOINT_FILENAME]


def test_lock_error_carries_the_pid(tmp_path):
    with lock_folder(tmp_path, what="--output"):
        with pytest.raises(FolderLockedError) as info:
            with lock_folder(tmp_path, what="--output"):
                pass
    assert info.value.pid == os.getpid()


# ------------------------------------------------------------- output folder
def test_a_non_empty_output_is_refused_without_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(capsys, "--output", str(out))[0] == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    code, stdout, err = run_cli(capsys, "--output", str(out), "--seed", "1")
    assert code == 2 and stdout == ""
    assert err == (f"clreplay run: error: --output must name an empty folder (or a run's own folder when "
                   f"resuming), got '{out}' holding epochs.csv, events.jsonl, experiences.csv, log.txt, "
                   "results.json: pass --overwrite to replace the files of the "
                   "earlier run, or choose another folder\n")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_overwrite_replaces_run_files_and_keeps_others(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(capsys, "--output", str(out), "--epochs", "1")[0] == 0
    (out / "notes.md").write_text("mine")
    assert run_cli(capsys, "--output", str(out), "--overwrite")[0] == 0
    epochs = list(csv.DictReader((out / "epochs.csv").open()))
    assert len(epochs) == 3 * 2  # only this run's rows: 3 experiences x 2 epochs
    events = [json.loads(line)["event"] for line in (out / "events.jsonl").open()]
    assert events.count("run_start") == 1
    assert (out / "notes.md").read_text() == "mine"


# --------------------------------------------------------- resume and Ctrl-C
class InterruptAt:
    """Cross-entropy that raises KeyboardInterrupt (Ctrl-C) at iteration ``iteration`` (from 0)
    of epoch ``epoch`` (from 0) of experience ``experience``."""

    def __init__(self, strategy, experience, epoch, iteration):
        self.strategy, self.loss_fn = strategy, strategy.loss_fn
        self.at, self.calls = (experience, epoch), iteration

    def __call__(self, output, target):
        clock = self.strategy.clock
        if (clock.train_exp_counter, clock.train_exp_epochs) == self.at:
            if self.calls == 0:
                raise KeyboardInterrupt
            self.calls -= 1
        return self.loss_fn(output, target)


def interrupt_at(monkeypatch, experience, epoch, iteration):
    build = run_module.build_strategy

    def build_and_arm(config, benchmark, **kwargs):
        strategy = build(config, benchmark, **kwargs)
        strategy.loss_fn = InterruptAt(strategy, experience, epoch, iteration)
        return strategy

    monkeypatch.setattr(run_module, "build_strategy", build_and_arm)


def rows(path):
    """The CSV rows without their timings."""
    return [{k: v for k, v in row.items() if k not in ("seconds", "samples_per_s", "train_s", "eval_s")}
            for row in csv.DictReader(path.open())]


def test_ctrl_c_ends_with_one_line_and_resumes_to_the_same_results(tmp_path, capsys, monkeypatch):
    ref = tmp_path / "ref"
    assert run_cli(capsys, "--output", str(ref))[0] == 0
    out, ck = tmp_path / "out", tmp_path / "ck"
    # Experience 1, epoch 2, after its first epoch was logged.
    interrupt_at(monkeypatch, 1, 1, 3)
    code, _, err = run_cli(capsys, "--output", str(out), "--checkpoint-dir", str(ck))
    assert code == 130
    assert err == (f"clreplay run: interrupted during experience 2 of 3; {ck}/{CHECKPOINT_FILENAME} holds "
                   "the 1 finished experience(s): run the same command to resume\n")
    assert read_checkpoint(ck / CHECKPOINT_FILENAME)["next_experience"] == 1
    assert sorted(p.name for p in ck.iterdir()) == [CHECKPOINT_FILENAME]  # lock released
    assert len(rows(out / "epochs.csv")) == 3  # two of experience 0, one of the interrupted one
    monkeypatch.setattr(run_module, "build_strategy", BUILD)

    code, stdout, err = run_cli(capsys, "--output", str(out), "--checkpoint-dir", str(ck))
    assert code == 0, err
    assert f"resumed from {ck}/{CHECKPOINT_FILENAME}: 1 of 3 experiences already trained" in stdout
    got, want = (json.loads((d / "results.json").read_text()) for d in (out, ref))
    assert got["accuracy_matrix"] == want["accuracy_matrix"]
    # The rolled-back attempt's rows are gone: each experience and epoch listed once.
    assert rows(out / "epochs.csv") == rows(ref / "epochs.csv")
    assert rows(out / "experiences.csv") == rows(ref / "experiences.csv")
    events = [json.loads(line) for line in (out / "events.jsonl").open()]
    assert [(e["event"], e.get("experience"), e.get("epoch")) for e in events if e["event"] != "run_start"] == [
        (e["event"], e.get("experience"), e.get("epoch"))
        for e in map(json.loads, (ref / "events.jsonl").open()) if e["event"] != "run_start"]
    assert [e["start"] for e in events if e["event"] == "run_start"] == [0, 1]
    log = (out / "log.txt").read_text()
    assert log.count("experience 2 starts") == 1 and log.count("experience 1 done") == 1  # numbered from 1


def test_a_run_killed_in_its_first_experience_restarts_with_the_same_command(tmp_path, capsys, monkeypatch):
    out, ck = tmp_path / "out", tmp_path / "ck"
    interrupt_at(monkeypatch, 0, 1, 2)  # logs of epoch 1 written, no experience finished
    assert run_cli(capsys, "--output", str(out), "--checkpoint-dir", str(ck))[0] == 130
    monkeypatch.setattr(run_module, "build_strategy", BUILD)
    code, stdout, err = run_cli(capsys, "--output", str(out), "--checkpoint-dir", str(ck))
    assert code == 0, err
    assert "0 of 3 experiences already trained" in stdout
    assert [(r["experience"], r["epoch"]) for r in rows(out / "epochs.csv")] == [
        (str(e), str(p)) for e in range(3) for p in (1, 2)]


def test_interrupt_in_the_first_experience(tmp_path, capsys, monkeypatch):
    interrupt_at(monkeypatch, 0, 0, 3)
    code, _, err = run_cli(capsys, "--checkpoint-dir", str(tmp_path / "ck"))
    assert code == 130
    ck = tmp_path / "ck"
    assert err == (f"clreplay run: interrupted during experience 1 of 3; {ck}/{CHECKPOINT_FILENAME} holds "
                   "the 0 finished experience(s): run the same command to resume\n")
    assert read_checkpoint(ck / CHECKPOINT_FILENAME)["next_experience"] == 0
    code, _, err = run_cli(capsys)
    assert code == 130 and err.endswith("nothing was saved (no checkpoint folder)\n")


def test_resuming_into_another_output_starts_its_logs_there(tmp_path, capsys, monkeypatch):
    ck = tmp_path / "ck"
    interrupt_at(monkeypatch, 1, 0, 3)
    assert run_cli(capsys, "--output", str(tmp_path / "a"), "--checkpoint-dir", str(ck))[0] == 130
    monkeypatch.setattr(run_module, "build_strategy", BUILD)
    assert run_cli(capsys, "--output", str(tmp_path / "b"), "--checkpoint-dir", str(ck))[0] == 0
    assert [row["experience"] for row in rows(tmp_path / "b" / "experiences.csv")] == ["1", "2"]


def test_a_refused_checkpoint_leaves_the_output_untouched(tmp_path, capsys):
    out, ck = tmp_path / "out", tmp_path / "ck"
    assert run_cli(capsys, "--output", str(out), "--checkpoint-dir", str(ck))[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    code, _, err = run_cli(capsys, "--output", str(out), "--checkpoint-dir", str(ck), "--lr", "0.1")
    assert code == 2 and "lr: saved 0.05, now 0.1" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_python_api_refuses_non_empty_output_naming_the_field(tmp_path):
    (tmp_path / "x").write_text("x")
    with pytest.raises(ValueError, match=r"^output must name an empty folder .* pass overwrite=True to"):
        run_experiment(RunConfig(epochs=1, n_experiences=2, output=str(tmp_path)), log=lambda _: None)


def test_a_kill_during_the_first_save_leaves_the_output_empty(tmp_path, capsys, monkeypatch):
    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as if SIGKILL hit the untrained state's save

    monkeypatch.setattr(run_module, "save_checkpoint", killed)
    out, ck = tmp_path / "out", tmp_path / "ck"
    assert run_cli(capsys, "--output", str(out), "--checkpoint-dir", str(ck))[0] == 130
    assert list(out.iterdir()) == []  # no log file was created yet: the same command can start
    monkeypatch.setattr(run_module, "save_checkpoint", SAVE)
    assert run_cli(capsys, "--output", str(out), "--checkpoint-dir", str(ck))[0] == 0


def test_leftovers_of_killed_saves_are_removed_when_a_run_starts(tmp_path, capsys):
    ck = tmp_path / "ck"
    assert run_cli(capsys, "--checkpoint-dir", str(ck))[0] == 0
    (ck / f".{CHECKPOINT_FILENAME}.x1y2.tmp").write_bytes(b"half a file")
    (ck / f".{CHECKPOINT_FILENAME}.lock").write_text("999999\n")  # its holder was killed
    code, stdout, _ = run_cli(capsys, "--checkpoint-dir", str(ck))  # complete: nothing to save
    assert code == 0 and "3 of 3 experiences already trained" in stdout
    assert sorted(p.name for p in ck.iterdir()) == [CHECKPOINT_FILENAME]


def test_every_plot_a_run_draws_is_one_of_its_files():
    from clreplay.evaluation import plots
    from clreplay.workspace import RUN_FILES

    drawn = [value for name, value in vars(plots).items() if name.endswith("_PLOT")]
    assert drawn and set(drawn) <= set(RUN_FILES)
