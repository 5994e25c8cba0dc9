"""clreplay tune: grids and lists, the validation split, resuming a killed tune, the tables and
the best point as a preset that reproduces it."""

import json

import pytest

from clreplay.benchmarks import split_digits
from clreplay.cli import main
from clreplay.presets import resolve_config
from clreplay.run_config import RunConfig
from clreplay.tuning import (
    config_of,
    grid_points,
    parse_grid,
    read_points,
    run_point,
    validation_benchmark,
)

SMALL = ["--n-experiences", "2", "--epochs", "1", "--batch-size", "16", "--hidden", "8", "--mem-size", "30"]


def test_grid_and_list_of_points(tmp_path):
    grid = parse_grid(["lr=0.01,0.1", "alpha=0.2,0.5", "hidden=8x8,16"], "derpp")
    assert grid == {"lr": [0.01, 0.1], "alpha": [0.2, 0.5], "hidden": [[8, 8], [16]]}
    assert len(grid_points(grid)) == 8 and grid_points(grid)[1] == {"lr": 0.01, "alpha": 0.2, "hidden": [16]}
    (tmp_path / "p.toml").write_text("[[point]]\nlr = 0.1\nalpha = 0.3\n\n[[point]]\nlr = 0.03\n")
    assert read_points(tmp_path / "p.toml", "derpp") == [{"lr": 0.1, "alpha": 0.3}, {"lr": 0.03}]
    (tmp_path / "p.json").write_text(json.dumps([{"reg_weight": 0.5}]))
    assert read_points(tmp_path / "p.json", "cls-er") == [{"reg_weight": 0.5}]


@pytest.mark.parametrize("spec, method, message", [
    ("lr", "er", "--grid must be NAME=V1,V2,..."),
    ("alpha=0.1", "er", "--grid alpha is neither a run setting nor an option of --method er"),
    ("lr=fast", "er", "--grid lr takes a positive number values, got 'fast'"),
    ("lr=-1", "er", "--grid lr must be a positive number, got -1.0"),
    ("seed=1,2", "er", "--grid seed cannot be tuned"),
])
def test_bad_grids_are_refused(spec, method, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_grid([spec], method)


def test_the_validation_split_holds_out_a_share_of_every_class_and_never_the_test_set():
    bench = split_digits(n_experiences=2)
    tuned = validation_benchmark(bench, 0.2, seed=3)
    for train, val, original in zip(tuned.train_stream, tuned.test_stream, bench.train_stream):
        rows = set(train.dataset.indices.tolist()) | set(val.dataset.indices.tolist())
        assert rows == set(original.dataset.indices.tolist())
        assert not set(train.dataset.indices.tolist()) & set(val.dataset.indices.tolist())
        for c in original.classes_in_this_experience:
            n = int((original.dataset.targets == c).sum())
            assert int((val.dataset.targets == c).sum()) == round(0.2 * n)
    assert validation_benchmark(bench, 0.2, seed=3).test_stream[0].dataset.indices.tolist() == \
        tuned.test_stream[0].dataset.indices.tolist()
    with pytest.raises(ValueError, match=r"--holdout must be a share in \(0, 1\), got 0"):
        validation_benchmark(bench, 0)


def test_a_killed_tune_continues_and_its_best_preset_reproduces_the_best_point(tmp_path, capsys):
    out = tmp_path / "tune"
    argv = ["tune", *SMALL, "--grid", "lr=0.01,0.2", "--seeds", "0", "1", "--out", str(out)]
    assert main(argv) == 0
    runs = (out / "runs.jsonl").read_text().splitlines()
    assert len(runs) == 4
    # Killed during its last run: that line is lost (or cut); started again, only it runs.
    (out / "runs.jsonl").write_text("\n".join(runs[:3]) + "\n" + runs[3][:10])
    capsys.readouterr()
    assert main(argv) == 0
    assert "1 runs to do (3 already in" in capsys.readouterr().out
    table = (out / "table.md").read_text()
    assert table.count("\n") == 4 and "+0.00 [+0.00, +0.00]" in table
    best = json.loads((out / "runs.jsonl").read_text().splitlines()[0])  # any run's record
    assert set(best) >= {"point", "seed", "average_accuracy", "seconds", "forward_rows_per_sample"}
    # best.toml is a preset: the config it gives is the best point's.
    preset = resolve_config({}, config_file=out / "best.toml")
    lines = (out / "table.csv").read_text().splitlines()
    best_lr = float(lines[1].split(",")[0])
    base = RunConfig(n_experiences=2, epochs=1, batch_size=16, hidden=[8], mem_size=30).validate()
    expected = config_of(base.__dict__, {"lr": best_lr}, 0)
    assert preset.lr == best_lr and preset.validate() == expected
    # The best point on seed 0 scores what the tune recorded.
    recorded = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    mine = [r for r in recorded if r["point"] == {"lr": best_lr} and r["seed"] == 0][0]
    again = run_point(base.__dict__, {"lr": best_lr}, 0, 0.1, 0)
    assert again["average_accuracy"] == mine["average_accuracy"]
    # Another tune in the same folder is refused.
    assert main(["tune", *SMALL, "--grid", "lr=0.05", "--seeds", "0", "--out", str(out)]) == 2
    assert "holds another tune (its points, seeds differ)" in capsys.readouterr().err


def test_tune_help_documents_the_search(capsys):
    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("--grid NAME=V1,V2,...", "--points FILE", "validation split held out of the training data",
                 "the test set is never read", "--jobs", "OUT/runs.jsonl", "OUT/best.toml", "paired"):
        assert text in out


def test_tune_needs_points_and_refuses_run_only_flags(tmp_path, capsys):
    assert main(["tune", *SMALL, "--out", str(tmp_path / "t")]) == 2
    assert "needs the points to try" in capsys.readouterr().err
    assert main(["tune", *SMALL, "--grid", "lr=0.1", "--output", str(tmp_path), "--out", str(tmp_path / "t")]) == 2
    assert "--output does not apply to clreplay tune" in capsys.readouterr().err
