"""--class-order and --blurry on the command line: what they do and what they refuse."""

import json

import pytest

from clreplay.cli import main
from clreplay.run_config import RunConfig

SHORT = ["run", "--epochs", "1", "--n-experiences", "2", "--hidden", "8", "--mem-size", "20"]


def test_class_order_label_and_explicit_reach_the_results(tmp_path):
    assert main(SHORT + ["--class-order", "label", "--output", str(tmp_path / "a")]) == 0
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert results["benchmark"]["class_order"] == list(range(10)) and results["config"]["class_order"] == "label"
    order = "9,8,7,6,5,4,3,2,1,0"
    assert main(SHORT + ["--class-order", order, "--output", str(tmp_path / "b")]) == 0
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    assert results["benchmark"]["classes"][0] == [5, 6, 7, 8, 9]


@pytest.mark.parametrize("argv, message", [
    (["--class-order", "1,2"], "--class-order must be a permutation of the classes [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], "
                               "got [1, 2]"),
    (["--class-order", "a,b"], "--class-order must be label, seeded or comma-separated class labels"),
    (["--benchmark", "permuted_fashion_mnist", "--class-order", "label"],
     "--class-order applies to the class-incremental benchmarks"),
    (["--benchmark", "rotated_fashion_mnist", "--blurry", "0.1"], "--blurry applies to the class-incremental"),
    (["--blurry", "1"], "--blurry must be below 1.0, got 1.0"),
    (["--anytime-every", "0"], "--anytime-every must be a positive int or None, got 0"),
])
def test_bad_stream_options_are_refused_before_training(argv, message, capsys):
    assert main(SHORT + argv) == 2
    err = capsys.readouterr().err
    assert message in err


def test_blurry_run_trains_on_blurred_experiences(tmp_path):
    config = RunConfig(epochs=1, n_experiences=2, hidden=[8], blurry=0.2, class_order="label").validate()
    from clreplay.run import build_benchmark

    bench = build_benchmark(config)
    assert bench.train_stream[0].classes_in_this_experience == list(range(10))  # 20% of 5-9 moved into it
    assert bench.test_stream[0].classes_in_this_experience == [0, 1, 2, 3, 4]
