"""Errors that blame the right thing: the flag the user typed, the preset or file a value came
from (and the flag that overrides it), the valid range of a seed."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clreplay.cli import build_parser, flag_names, main
from clreplay.run import RunConfig


def run_cli(capsys, *args):
    code = main(["run", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_on_off_flags_are_named_by_what_they_turn_on(capsys):
    # Before: "--no-augment needs an image benchmark" for a user who typed --augment.
    code, _, err = run_cli(capsys, "--augment")
    assert code == 2
    assert err == ("clreplay run: error: --augment needs an image benchmark (split_cifar10, split_cifar100, "
                   "split_fashion_mnist, split_mnist, permuted_fashion_mnist, rotated_fashion_mnist), got --benchmark "
                   "'split_digits'\n")
    names = flag_names(build_parser()._subparsers._group_actions[0].choices["run"])
    assert (names["augment"], names["online"], names["replay"]) == ("--augment", "--online", "--no-replay")


def test_a_preset_s_own_value_is_not_blamed_as_typed(tmp_path, capsys):
    code, _, err = run_cli(capsys, "--preset", "der_er_split_mnist", "--data", str(tmp_path), "--no-replay")
    assert code == 2
    assert err == ("clreplay run: error: --online must be False without replay, got --online with --no-replay; "
                   "online = true comes from preset 'der_er_split_mnist', not from the command line: "
                   "--no-online overrides it\n")
    # The flag it names does override it: the next setting of the preset is the one refused.
    code, _, err = run_cli(capsys, "--preset", "der_er_split_mnist", "--data", str(tmp_path), "--no-replay",
                           "--no-online")
    assert code == 2
    assert err == ("clreplay run: error: --policy needs replay, got --policy 'reservoir' with --no-replay (no "
                   "memory to fill); policy = \"reservoir\" comes from preset 'der_er_split_mnist', not from "
                   "the command line: --policy VALUE overrides it\n")
    code, _, err = run_cli(capsys, "--preset", "der_er_split_mnist", "--data", str(tmp_path), "--no-replay",
                           "--no-online", "--policy", "experience")
    assert code == 2
    assert err.endswith("batch_size_mem = 10 comes from preset 'der_er_split_mnist', not from the command "
                        "line: --batch-size-mem VALUE overrides it; to leave it unset, start from a copy of "
                        "the preset without it (`clreplay presets --show NAME > my.toml`, edited, then "
                        "--config my.toml)\n")


def test_a_config_file_s_and_a_benchmark_s_defaults_are_named_too(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text("task_balanced = true\nreplay = false\n")
    code, _, err = run_cli(capsys, "--config", str(config))
    assert code == 2
    assert err == (f"clreplay run: error: --task-balanced needs replay, got --task-balanced with --no-replay (no "
                   f"memory to fill); task_balanced = true comes from config file '{config}', not from the "
                   f"command line: --no-task-balanced overrides it; replay = false comes from config file "
                   f"'{config}', not from the command line: --replay overrides it\n")
    code, _, err = run_cli(capsys, "--benchmark", "split_cifar10", "--data", str(tmp_path), "--init", "xavier")
    assert code == 2
    assert err == ("clreplay run: error: --init applies to --model 'mlp', got --init 'xavier' with --model "
                   "'resnet18'; model = \"resnet18\" comes from the defaults of benchmark 'split_cifar10' "
                   "(preset 'split_cifar10'), not from the command line: --model VALUE overrides it\n")


def test_typed_flags_get_no_note(capsys):
    code, _, err = run_cli(capsys, "--no-replay", "--online")
    assert code == 2
    assert err == "clreplay run: error: --online needs replay, got --online with --no-replay (no memory to fill)\n"


@settings(max_examples=20, deadline=None, derandomize=True)
@given(seed=st.integers(2**63, 2**200))
def test_seeds_beyond_the_valid_range_say_the_range(seed):
    # Before: "Overflow when unpacking long long" from the torch generator.
    with pytest.raises(ValueError, match=rf"^--seed must be an int in \[0, 2\*\*63 - 1\], got {seed}$"):
        RunConfig(seed=seed).validate(names={"seed": "--seed"})


def test_the_largest_seed_runs_and_the_command_line_says_the_range(capsys):
    assert RunConfig(seed=2**63 - 1).validate().seed == 2**63 - 1
    code, _, err = run_cli(capsys, "--seed", "18446744073709551616")
    assert code == 2
    assert err == "clreplay run: error: --seed must be an int in [0, 2**63 - 1], got 18446744073709551616\n"
