"""bench/methods_table.py's paired differences from ER, on records made by hand."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import methods_table  # noqa: E402


def _record(method, seed, accuracy, init="xavier"):
    return {"dataset": "fmnist", "setting": "1ep-m200", "method": method, "seed": seed,
            "init": init, "accuracy": accuracy}


def test_differences_are_paired_by_seed_in_points_with_a_t_interval():
    records = [_record("er", s, a) for s, a in [(0, 0.70), (1, 0.80), (2, 0.60)]]
    # DER beats ER by 1, 2 and 3 points on seeds 0, 1, 2 (its seed 3 has no ER run to pair with).
    records += [_record("der", s, a) for s, a in [(0, 0.71), (1, 0.82), (2, 0.63), (3, 0.10)]]
    records += [_record("der", 0, 0.99, init="default"), _record("naive", 0, 0.1)]
    paired = methods_table.paired_differences(records, ["fmnist"], ["1ep-m200"],
                                              ["naive", "er", "der"], init="xavier")
    assert set(paired) == {("fmnist", "1ep-m200", "der")}
    cell = paired[("fmnist", "1ep-m200", "der")]
    # Differences 1, 2, 3: mean 2, standard deviation 1, standard error 1/sqrt(3);
    # t(0.975, 2 degrees of freedom) = 4.302653.
    assert cell["seeds"] == 3
    assert cell["mean"] == pytest.approx(2.0)
    assert cell["se"] == pytest.approx(3 ** -0.5)
    assert cell["low"] == pytest.approx(2.0 - 4.302653 * 3 ** -0.5, abs=1e-5)
    assert cell["high"] == pytest.approx(2.0 + 4.302653 * 3 ** -0.5, abs=1e-5)
    line = methods_table.markdown({}, ["fmnist"], ["1ep-m200"], ["der"], paired).splitlines()[-1]
    assert line == "| DER | +2.00 ± 0.58 [-0.48, +4.48], 3 |"


def test_a_method_run_on_one_seed_has_no_paired_difference():
    records = [_record("er", 0, 0.7), _record("der", 0, 0.8)]
    assert methods_table.paired_differences(records, ["fmnist"], ["1ep-m200"], ["der"]) == {}
