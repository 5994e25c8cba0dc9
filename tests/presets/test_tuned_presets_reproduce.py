"""The shipped presets reproduce their rows of the methods table: `clreplay run --preset
METHOD/split_digits/200 --seed 0` ends at the accuracy bench/tuned_table.py recorded for it
(bench/results/methods_tuned.json, written by the table's runs)."""

import json
from pathlib import Path

import pytest

from clreplay.presets import resolve_config
from clreplay.run import run_experiment

RECORDS = Path(__file__).resolve().parents[2] / "bench" / "results" / "methods_tuned.json"


def _recorded(method):
    runs = json.loads(RECORDS.read_text())["runs"] if RECORDS.exists() else []
    found = [r for r in runs if (r["dataset"], r["setting"], r["method"], r["seed"]) ==
             ("digits", "1ep-m200", method, 0)]
    return found[0] if found else None


@pytest.mark.parametrize("method", ["er", "derpp", "er-ace", "cls-er", "mir", "bic", "scr"])
def test_a_digits_preset_reproduces_its_table_entry(method):
    record = _recorded(method)
    if record is None:
        pytest.skip("the table has no split_digits entry for this method yet")
    config = resolve_config({"seed": 0}, preset=f"{method}/split_digits/200")
    results = run_experiment(config, log=lambda _: None)
    assert results["average_accuracy"] == record["accuracy"]
    assert results["accuracy_matrix"][-1] == record["final_row"]
