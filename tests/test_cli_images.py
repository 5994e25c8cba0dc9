"""Image benchmarks and models through the command line, end to end."""

import json

import pytest
import torch
from cifar_files import write_cifar

from clreplay.benchmarks.fashion_mnist import fashion_mnist_files_present
from clreplay.cli import main
from clreplay.presets import resolve_config
from clreplay.run import build_benchmark, build_strategy, run_experiment


def test_resnet18_on_cifar_shaped_data_with_augmentation(tmp_path, capsys):
    archive, _ = write_cifar(tmp_path / "data", "cifar10", packed=True, n_train=40, n_test=20)
    out = tmp_path / "out"
    # The ResNet-18 architecture at 8 base filters, to keep the test short.
    assert main(["run", "--benchmark", "split_cifar10", "--data", str(archive), "--n-experiences", "2",
                 "--epochs", "1", "--batch-size", "10", "--mem-size", "10", "--width", "8",
                 "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "model resnet18, augmented" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["model"] == "resnet18" and results["config"]["augment"] is None
    assert results["config"]["width"] == 8
    assert len(results["task_accuracy_matrix"]) == 2 and len(results["accuracy_matrix"][1]) == 2
    assert results["memory"]["per_experience"][-1]["size"] == 10
    assert (out / "task_accuracy_matrix.png").exists()


def test_augmented_run_resumes_exactly(tmp_path):
    archive, _ = write_cifar(tmp_path / "data", "cifar10", packed=False, n_train=30, n_test=10)
    given = dict(benchmark="split_cifar10", data=str(archive), n_experiences=2, epochs=1, batch_size=10,
                 mem_size=10, model="cnn", width=4, checkpoint_dir=str(tmp_path / "ck"))
    reference = run_experiment(resolve_config({**given, "checkpoint_dir": None}), log=lambda _: None)

    class Stop(Exception):
        pass

    def stop_after_first(line):
        if line.startswith("experience 1/"):  # its checkpoint is already written
            raise Stop

    with pytest.raises(Stop):
        run_experiment(resolve_config(given), log=stop_after_first)
    resumed = run_experiment(resolve_config(given), log=lambda _: None)
    assert resumed["accuracy_matrix"] == reference["accuracy_matrix"]
    assert resumed["train_loss"] == reference["train_loss"]


def test_images_stay_uint8_in_the_data_and_the_memory(tmp_path):
    archive, _ = write_cifar(tmp_path, "cifar10", packed=False, n_train=20, n_test=10)
    config = resolve_config(dict(benchmark="split_cifar10", data=str(archive), n_experiences=2,
                                 epochs=1, batch_size=10, mem_size=6, model="cnn", width=4)).validate()
    bench = build_benchmark(config)
    strategy = build_strategy(config, bench)
    strategy.train(bench.train_stream[0])
    memory = strategy.plugins[0].ext_mem
    assert bench.train_stream[0].dataset.storage.dtype == torch.uint8
    assert all(group.storage.dtype == torch.uint8 for group in memory.values())


def test_flags_are_checked_before_any_training(capsys):
    assert main(["run", "--model", "resnet18"]) == 2
    assert "model 'resnet18' needs an image benchmark" in capsys.readouterr().err
    assert main(["run", "--augment"]) == 2
    assert "augment needs an image benchmark" in capsys.readouterr().err
    assert main(["run", "--width", "8"]) == 2
    assert "--width applies to models cnn, resnet18, got --width 8 with --model 'mlp'" in capsys.readouterr().err
    assert main(["run", "--benchmark", "split_cifar10", "--data", "x", "--model", "cnn", "--init", "xavier"]) == 2
    assert "--init applies to --model 'mlp', got --init 'xavier' with --model 'cnn'" in capsys.readouterr().err
    assert main(["run", "--benchmark", "split_cifar100"]) == 2
    assert "--data must name a file or folder for --benchmark 'split_cifar100', got None" in capsys.readouterr().err
    assert main(["run", "--benchmark", "split_fashion_mnist", "--data", "/nonexistent"]) == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err


@pytest.mark.skipif(not fashion_mnist_files_present(), reason="needs dataset-fashion-mnist")
def test_real_fashion_mnist_one_experience():
    # One experience of the real files (12,000 images, one epoch): a few seconds.
    config = resolve_config({"benchmark": "split_fashion_mnist"}).validate()
    bench = build_benchmark(config)
    strategy = build_strategy(config, bench)
    strategy.train(bench.train_stream[0])
    accuracy = strategy.evaluator.accuracy_matrix[0][0]
    assert accuracy > 0.9  # two classes learnt; the other four experiences untouched
    assert strategy.evaluator.accuracy_matrix[0][1:] == [0.0] * 4
