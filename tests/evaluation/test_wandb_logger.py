"""WandBLogger, in Weights & Biases' offline mode (no account, no network)."""

import pytest
import torch

from clreplay.evaluation.loggers import wandb_available

pytestmark = pytest.mark.skipif(not wandb_available(), reason="the wandb extra is not installed "
                                "(pip install -e '.[wandb]')")


def test_a_run_logs_its_scalars_config_and_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    from clreplay import ReplayPlugin
    from clreplay.benchmarks import split_digits
    from clreplay.evaluation import EvaluationPlugin, WandBLogger, accuracy_metrics
    from clreplay.models import make_mlp
    from clreplay.training import Naive

    logger = WandBLogger(project_name="clreplay-tests", run_name="replay", dir=tmp_path)
    rows = []
    log = logger.run.log
    logger.run.log = lambda row, **kwargs: (rows.append(dict(row)), log(row, **kwargs))
    bench = split_digits(n_experiences=2)
    evaluator = EvaluationPlugin(bench.test_stream, accuracy_metrics(stream=True), loggers=[logger])
    model = make_mlp(64, 10, [16], seed=0)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=64,
                     train_epochs=2, plugins=[ReplayPlugin(40)], evaluator=evaluator, seed=0)
    evaluator.emit("run_start", {"config": {"mem_size": 40, "benchmark": "split_digits"}})
    for experience in bench.train_stream:
        strategy.train(experience)
    evaluator.emit("run_end", {"average_accuracy": evaluator.report()["average_accuracy"],
                               "forward_transfer": None})

    epochs = [row for row in rows if "train/loss" in row]
    # Experience 1: 631 samples in batches of 64, 10 an epoch; experience 2: 626 samples, 32 of them
    # in each balanced batch of 64 (the other 32 replayed), 20 an epoch.
    assert [len(bench.train_stream[0].dataset), len(bench.train_stream[1].dataset)] == [631, 626]
    assert [row["train_iterations"] for row in epochs] == [10, 20, 40, 60]
    experiences = [row for row in rows if "experience" in row]
    assert [row["experience"] for row in experiences] == [1, 2]  # numbered for people
    last = evaluator.last_record
    assert experiences[-1]["eval/accuracy/exp1"] == last["accuracy"][0]
    assert experiences[-1]["eval/accuracy/exp2"] == last["accuracy"][1]
    assert experiences[-1]["eval/accuracy_on_seen"] == pytest.approx(last["accuracy_on_seen"])
    assert experiences[-1]["memory/size"] == 40
    named = [row for row in rows if "Top1_Acc_Stream/eval_phase/test_stream/Task000" in row]
    assert len(named) == 3  # the evaluations before training and after each experience
    assert named[-1]["Top1_Acc_Stream/eval_phase/test_stream/Task000"] == pytest.approx(
        strategy.eval_results["Top1_Acc_Stream/eval_phase/test_stream/Task000"])
    assert logger.run.config["mem_size"] == 40
    assert logger.run.summary["average_accuracy"] == pytest.approx(sum(last["accuracy"]) / 2)
    assert "forward_transfer" not in logger.run.summary.keys()  # undefined values are left out
    logger.close()
    written = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(written) == 1 and written[0].stat().st_size > 0


def test_a_run_given_is_not_finished_by_the_logger(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    import wandb

    from clreplay.evaluation import WandBLogger

    run = wandb.init(project="clreplay-tests", dir=str(tmp_path))
    try:
        WandBLogger(run=run).close()
        run.log({"still": 1.0})  # would raise on a finished run
        assert run.summary["still"] == 1.0
    finally:
        run.finish()
