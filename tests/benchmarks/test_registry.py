import pytest

from clreplay.benchmarks import get_benchmark, list_benchmarks


def test_list_and_get():
    assert "split_digits" in list_benchmarks()
    assert get_benchmark("split_digits", n_experiences=2).n_experiences == 2


def test_unknown_benchmark_suggests_close_names():
    with pytest.raises(ValueError, match="benchmark must be one of .* got 'split_digit'; did you mean 'split_digits'"):
        get_benchmark("split_digit")
