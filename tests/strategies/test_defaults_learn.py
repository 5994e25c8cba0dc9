"""The main job's defaults make every method learn: `clreplay run --method M` on split_digits."""

import pytest

from clreplay.run import RunConfig, run_experiment


@pytest.mark.parametrize("method, floor", [("der", 0.8), ("xder", 0.5)])
def test_the_method_learns_on_split_digits_with_the_defaults(method, floor):
    results = run_experiment(RunConfig(method=method), log=lambda _: None)
    assert results["average_accuracy"] >= floor
    # Without replay the same run knows the last experience's classes only (0.196).
    assert results["average_accuracy"] > 0.196 + 0.3
