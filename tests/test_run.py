import pytest

from clreplay.run import RunConfig, run_experiment


def test_default_main_job_reaches_the_target_accuracy():
    results = run_experiment(RunConfig(), log=lambda _: None)
    assert results["average_accuracy"] >= 0.85
    assert results["config"]["replay"] is True


def test_same_seed_same_numbers():
    config = dict(epochs=1, n_experiences=3, mem_size=60)
    a = run_experiment(RunConfig(**config, seed=3), log=lambda _: None)
    b = run_experiment(RunConfig(**config, seed=3), log=lambda _: None)
    assert a["accuracy_matrix"] == b["accuracy_matrix"]


def test_config_validation():
    with pytest.raises(ValueError, match="benchmark must be one of .* got 'digits'"):
        RunConfig(benchmark="digits").validate()
    with pytest.raises(ValueError, match="data must name a file or folder for benchmark 'split_mnist', got None"):
        RunConfig(benchmark="split_mnist").validate()
    with pytest.raises(ValueError, match="policy must be one of .* got 'clas'; did you mean 'class'"):
        RunConfig(policy="clas").validate()
    with pytest.raises(ValueError, match="lr must be a positive number, got -0.1"):
        RunConfig(lr=-0.1).validate()
