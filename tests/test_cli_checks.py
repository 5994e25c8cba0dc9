"""Every input of `clreplay run` is checked before the first step, with errors naming the flag."""

import errno
import json
import os

import pytest
import torch

import clreplay.workspace as workspace
from clreplay.cli import main
from clreplay.run import RunConfig, run_experiment

FAST = ["--epochs", "1", "--n-experiences", "2", "--hidden", "8", "--mem-size", "20"]


def run_cli(capsys, *args):
    code = main(["run", *FAST, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_checkpoint_dir_naming_a_file_is_refused_before_training(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    code, out, err = run_cli(capsys, "--checkpoint-dir", str(target))
    assert code == 2 and out == ""  # not even the benchmark was loaded
    assert err == f"clreplay run: error: --checkpoint-dir must name a folder, got the file '{target}'\n"


@pytest.mark.parametrize("flag", ["--checkpoint-dir", "--output", "--memmap-dir"])
def test_read_only_folders_are_refused_naming_the_flag(tmp_path, capsys, monkeypatch, flag):
    def read_only(**kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(workspace.tempfile, "mkstemp", read_only)
    extra = ["--policy", "reservoir"] if flag == "--memmap-dir" else []
    code, out, err = run_cli(capsys, flag, str(tmp_path), *extra)
    assert code == 2 and out == ""
    assert err == (f"clreplay run: error: {flag} must name a folder this process can write into, "
                   f"got '{tmp_path}': Read-only file system\n")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_folder_that_cannot_be_created(capsys):
    code, _, err = run_cli(capsys, "--output", "/proc/self/clreplay-out")
    assert code == 2 and err.startswith(
        "clreplay run: error: --output must name a folder that can be created, got '/proc/self/clreplay-out': ")


def test_output_naming_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "results.json"
    target.write_text("{}")
    code, _, err = run_cli(capsys, "--output", str(target))
    assert code == 2
    assert err == f"clreplay run: error: --output must name a folder, got the file '{target}'\n"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_machine_without_it_is_refused(capsys):
    code, out, err = run_cli(capsys, "--device", "cuda")
    why = ("this torch build has no CUDA support (a CPU-only build)" if torch.version.cuda is None
           else "torch finds no cuda device on this machine")
    assert code == 2 and out == ""
    assert err == f"clreplay run: error: --device must name a device available here, got 'cuda': {why}; use 'cpu'\n"


def test_python_api_names_fields_not_flags():
    with pytest.raises(ValueError, match="^mem_size must be a positive int, got 0$"):
        run_experiment(RunConfig(mem_size=0))
    with pytest.raises(ValueError, match="^device must name a torch device, got 'nonsense:0'$"):
        RunConfig(device="nonsense:0").validate()


def test_selection_ignored_by_the_policy_is_refused(capsys):
    code, _, err = run_cli(capsys, "--selection", "herding")
    assert code == 2
    assert err == ("clreplay run: error: --selection 'herding' needs --policy 'class' or 'parametric' "
                   "(the 'experience' policy keeps a random subset and would ignore it), got "
                   "--policy 'experience'\n")
    code, _, err = run_cli(capsys, "--policy", "reservoir", "--selection", "entropy")
    assert code == 2 and "the 'reservoir' policy keeps a random subset" in err
    with pytest.raises(ValueError, match=r"^selection 'margin' needs policy 'class' or 'parametric'"):
        RunConfig(selection="margin").validate()
    RunConfig(selection="margin", policy="parametric").validate()


def test_replay_options_without_replay_are_refused(capsys):
    code = main(["run", "--epochs", "1", "--no-replay", "--policy", "class"])
    assert code == 2
    assert capsys.readouterr().err == (
        "clreplay run: error: --policy needs replay, got --policy 'class' with --no-replay "
        "(no memory to fill)\n")


@pytest.mark.parametrize("typed, named", [
    (["--mem-size", "100"], "--mem-size 100"),
    (["--batch-size-mem", "10"], "--batch-size-mem 10"),
    (["--online"], "--online"),
    (["--memmap-dir", "m"], "--memmap-dir 'm'"),
    (["--method", "der"], "--method 'der'"),
    (["--alpha", "0.5"], "--alpha 0.5"),
])
def test_any_replay_option_typed_with_no_replay_is_refused_naming_it(capsys, typed, named):
    # Before: --mem-size was accepted (and ignored) where --batch-size-mem was refused.
    assert main(["run", "--no-replay", *typed]) == 2
    flag = named.split()[0]
    assert capsys.readouterr().err == (
        f"clreplay run: error: {flag} needs replay, got {named} with --no-replay (no memory to fill)\n")


def test_replay_options_typed_off_or_from_a_preset_agree_with_no_replay(capsys, tmp_path):
    config = tmp_path / "mine.toml"
    config.write_text("mem_size = 50\n")  # a file's value: not typed, not refused here
    assert main(["run", *FAST[:4], "--hidden", "8", "--no-replay", "--no-online", "--method", "er",
                 "--config", str(config)]) == 0
    assert "no replay" in capsys.readouterr().out


def test_unknown_choices_suggest_the_close_match(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--selection", "herdin"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "clreplay run: error: argument --selection: must be one of 'closest', 'entropy', 'herding', "
        "'margin', 'random', got 'herdin'; did you mean 'herding'?")


def test_help_reads_right(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for wrong in ["(default: True)", "(default: False)", "(default: None)", "None means", "(None:"]:
        assert wrong not in text
    assert "--replay, --no-replay replay (--no-replay: plain fine-tuning, the Naive baseline)" in text
    assert "--mem-size N replay memory size, in samples (default: 200)" in text
    assert "--policy {class,experience,parametric,reservoir}" in text


def test_name_labels_results_and_reports(tmp_path, capsys, monkeypatch):
    import clreplay.run as run_module

    monkeypatch.setattr(run_module, "render_plots", lambda results, folder: [])
    out = tmp_path / "out"
    code, stdout, _ = run_cli(capsys, "--name", "digits-8x8", "--output", str(out))
    assert code == 0 and stdout.startswith("clreplay: digits-8x8, 2 experiences")
    results = json.loads((out / "results.json").read_text())
    assert results["benchmark"]["name"] == "digits-8x8"
    assert main(["report", str(out), "--no-plots"]) == 0
    assert capsys.readouterr().out.startswith(f"{out}: digits-8x8, replay 20 (experience)")


def test_data_errors_name_the_data_flag(tmp_path, capsys):
    # Before: "root must hold train-images-idx3-ubyte ...", the loader's argument, not the flag.
    code = main(["run", "--benchmark", "split_mnist", "--data", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err == (
        "clreplay run: error: --data must hold train-images-idx3-ubyte or train-images-idx3-ubyte.gz, "
        f"got a folder without it: {tmp_path}\n")
    (tmp_path / "c.tar.gz").write_text("not an archive")
    assert main(["run", "--benchmark", "split_cifar10", "--data", str(tmp_path / "c.tar.gz")]) == 2
    assert capsys.readouterr().err.startswith("clreplay run: error: --data must be a readable (gzipped) tar archive")
