"""The command line as a new user meets it: --version, help that fits and shows the defaults
that apply, one error prefix per subcommand, its own usage for an unknown option, quiet
exits into a closed pipe."""

import importlib.metadata
import subprocess
import sys

import pytest

from clreplay.cli import main

FAST = ["--epochs", "1", "--n-experiences", "2", "--hidden", "8", "--mem-size", "20"]


def help_text(capsys, monkeypatch, *args):
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"clreplay {importlib.metadata.version('clreplay')}\n"


def test_run_help_fits_on_two_screens(capsys, monkeypatch):
    text = help_text(capsys, monkeypatch, "run")
    assert len(text.splitlines()) <= 120  # two screens of 60; it was 181 lines, every method's options included
    assert "--alpha" not in text and "--passes" not in text  # shown with their --method
    assert "clreplay run --method NAME --help" in " ".join(text.split())


def test_run_help_shows_the_defaults_of_the_benchmark_given(capsys, monkeypatch):
    plain = " ".join(help_text(capsys, monkeypatch, "run").split())
    assert "--epochs N epochs per experience (default: 5)" in plain
    assert "--lr LR SGD learning rate (default: 0.05)" in plain
    text = " ".join(help_text(capsys, monkeypatch, "run", "--benchmark", "split_fashion_mnist").split())
    assert "The defaults shown are those of --benchmark split_fashion_mnist." in text
    assert "--epochs N epochs per experience (default: 1)" in text
    assert "--lr LR SGD learning rate (default: 0.005)" in text
    preset = " ".join(help_text(capsys, monkeypatch, "run", "--preset", "der_er_split_mnist").split())
    assert "--batch-size N training mini-batch size, current and replayed samples together " \
           "(default: 10)" in preset
    assert "--hidden N [N ...] hidden layer sizes of the MLP (--model mlp) (default: [100, 100])" in preset


def test_run_help_lists_the_options_of_the_method_given(capsys, monkeypatch):
    text = " ".join(help_text(capsys, monkeypatch, "run", "--method", "derpp").split())
    assert "options of --method derpp:" in text
    assert "--alpha ALPHA weight of DER's logit-matching (MSE) term (default: 0.2)" in text
    assert "(default: 1.0)" in text.split("--beta BETA")[1].split("--")[0]
    assert "--passes" not in text


def test_presets_show_a_benchmark(capsys):
    assert main(["presets", "--show", "split_fashion_mnist"]) == 0
    assert "epochs = 1\nlr = 0.005\n" in capsys.readouterr().out
    assert main(["presets", "--show", "split_digits"]) == 0
    assert capsys.readouterr().out.startswith("# --benchmark split_digits brings no settings of its own")


def test_errors_of_a_subcommand_carry_its_name(capsys, tmp_path):
    assert main(["run", "--mem-size", "0"]) == 2
    assert capsys.readouterr().err == "clreplay run: error: --mem-size must be a positive int, got 0\n"
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith("clreplay report: error: ")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err.startswith("clreplay compare: error: ")


def test_an_unknown_option_gets_the_subcommands_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--mem-sizes", "100"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    # Before: the top-level usage and "clreplay: error: unrecognized arguments".
    assert err.startswith("usage: clreplay run ")
    assert err.endswith("clreplay run: error: unrecognized arguments: --mem-sizes 100; "
                        "did you mean --mem-size?\n")
    with pytest.raises(SystemExit):
        main(["report", "DIR", "--labels", "a"])
    err = capsys.readouterr().err
    assert err.startswith("usage: clreplay report ")
    assert err.endswith("clreplay report: error: unrecognized arguments: --labels a\n")


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["run", *FAST, "--output", str(out)]) == 0
    return out


@pytest.mark.parametrize("command", [["report", "{dir}", "--no-plots"], ["run", "--help"], ["--help"]])
def test_a_closed_pipe_ends_quietly(results_dir, command):
    # `clreplay report DIR | head -1`: the reader is gone before the output is flushed.
    args = [arg.format(dir=results_dir) for arg in command]
    proc = subprocess.Popen([sys.executable, "-m", "clreplay", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait() in (0, 141)  # before: a BrokenPipeError traceback, status 120
    assert err == b""
