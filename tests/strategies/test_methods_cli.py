"""`clreplay run --method ...`: the registry's flags, their checks, and `compare` across methods."""

import pytest

from clreplay.cli import main
from clreplay.evaluation import read_results, write_results
from clreplay.run import RunConfig, run_experiment
from clreplay.strategies import METHODS, list_methods

SHORT = ["run", "--epochs", "1", "--n-experiences", "2", "--mem-size", "30", "--batch-size", "16",
         "--hidden", "16"]


def test_help_lists_every_method_and_its_options_with_defaults(capsys):
    for name, method in METHODS.items():
        with pytest.raises(SystemExit):
            main(["run", "--method", name, "--help"])
        out = " ".join(capsys.readouterr().out.split()).replace("- ", "-")  # words wrapped at hyphens
        assert "--method {er,der,derpp,xder,er-ace,agem,gdumb,icarl,cls-er,mir,bic,scr,onpro}" in out
        assert f"{name}: {method.summary}" in out
        for option in method.options:
            text = " ".join(option.help.split()).replace("- ", "-")
            default = f"(default: {option.default})" if option.kind is not bool else ""
            assert f"{option.flag}" in out and f"{text} {default}".strip() in out


@pytest.mark.parametrize("argv, message", [
    (["--method", "der", "--beta", "0.5"], "--beta applies to --method derpp or xder, got --beta 0.5 with "
                                           "--method der"),
    (["--method", "derpp", "--alpha", "-1"], "--alpha must be a number >= 0.0, got -1.0"),
    (["--method", "gdumb", "--passes", "0"], "--passes must be a positive int, got 0"),
    (["--method", "agem", "--batch-size-mem", "4"], "--batch-size-mem does not apply to --method agem"),
    (["--method", "er-ace", "--policy", "class"], "--policy does not apply to --method er-ace, got --policy 'class'"),
    (["--method", "icarl", "--online"], "--online does not apply to --method icarl, got --online"),
    (["--method", "der", "--no-replay"], "--method needs replay, got --method 'der' with --no-replay"),
])
def test_bad_method_options_are_refused_before_training(argv, message, capsys):
    assert main(SHORT + argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "experience 1/2" not in captured.out


def test_a_misspelt_method_is_refused_with_suggestions(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(SHORT + ["--method", "derp"])
    assert exit_.value.code == 2
    assert "argument --method: must be one of 'er', 'der', 'derpp', 'xder', 'er-ace', 'agem', 'gdumb', " \
           "'icarl', 'cls-er', 'mir', 'bic', 'scr', 'onpro', got 'derp'; did you mean 'derpp', 'der'?" in capsys.readouterr().err


def test_options_are_resolved_with_the_methods_defaults():
    config = RunConfig(method="derpp", method_options={"beta": 2}).validate()
    assert config.method_options == {"alpha": 0.2, "beta": 2.0, "store_every_epoch": True}
    assert RunConfig(method="icarl").validate().method_options == {}
    with pytest.raises(ValueError, match="method must be one of 'er', 'der', .* got 'derp'; did you mean 'derpp', 'der'"):
        RunConfig(method="derp").validate()


def test_compare_labels_runs_by_method(tmp_path, capsys):
    for method, options in [("derpp", {}), ("gdumb", {"passes": 2})]:
        config = RunConfig(epochs=1, n_experiences=2, mem_size=30, batch_size=16, hidden=[16], method=method,
                           method_options=options, batch_size_mem=8 if method == "derpp" else None)
        write_results(run_experiment(config, log=lambda _: None), tmp_path / method / "out")
    assert read_results(tmp_path / "derpp" / "out")["config"]["method_options"] == {
        "alpha": 0.2, "beta": 1.0, "store_every_epoch": True}
    capsys.readouterr()
    plot = tmp_path / "cmp.png"
    assert main(["compare", str(tmp_path / "derpp" / "out"), str(tmp_path / "gdumb" / "out"),
                 "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    # Both folders are named "out": the runs are labelled by their method and options.
    assert "split_digits, derpp (alpha 0.2, beta 1.0, store every epoch True), memory 30" in out
    assert "split_digits, gdumb (passes 2), memory 30" in out
    rows = [line for line in out.splitlines() if line.startswith("split_digits")]
    assert [row.split()[-1] for row in rows[:2]] == ["derpp", "gdumb"]  # the method column
    assert plot.stat().st_size > 0
    assert set(list_methods()) == set(METHODS)
