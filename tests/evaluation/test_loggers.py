"""Loggers: progress bar, text, JSON lines, CSV and TensorBoard."""

import csv
import io
import json
import re
import sys

import pytest
import torch

from clreplay.benchmarks import split_digits
from clreplay.evaluation import (
    CSVLogger,
    EvaluationPlugin,
    JSONLinesLogger,
    Logger,
    ProgressBarLogger,
    TensorBoardLogger,
    TextLogger,
    default_loggers,
)
from clreplay.models import make_mlp
from clreplay.training import Naive

EPOCH_END = {"experience": 0, "epoch": 1, "epochs": 2, "iterations": 8, "samples": 254,
             "loss": 0.12345, "seconds": 0.5, "samples_per_s": 508.0, "train_iterations": 8}
EXPERIENCE_END = {"experience": 1, "classes": [5, 7], "accuracy": [0.5, 0.75],
                  "accuracy_on_seen": 0.625, "class_accuracy": [0.5, None], "train_loss": 0.25,
                  "train_samples": 508, "train_s": 1.0, "samples_per_s": 508.0, "eval_s": 0.125,
                  "memory": {"size": 20, "groups": {"0": 20}, "classes": {"1": 20},
                             "mem_size": 20, "policy": "ExperienceBalancedStoragePolicy"}}


def short_run(loggers, *, epochs=1):
    bench = split_digits(n_experiences=5)
    model = make_mlp(64, 10, [16], seed=0)
    evaluator = EvaluationPlugin(bench.test_stream[:2], loggers=loggers)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.05), train_mb_size=32,
                     train_epochs=epochs, evaluator=evaluator, seed=0)
    for exp in bench.train_stream[:2]:
        strategy.train(exp)
    evaluator.close()
    return evaluator


def test_logger_is_abstract():
    class Half(Logger):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Half()


def test_text_logger_lines():
    stream = io.StringIO()
    logger = TextLogger(stream)
    logger.log("epoch_start", {"experience": 0, "epoch": 1, "epochs": 2, "batches": 8})
    logger.log("epoch_end", EPOCH_END)
    logger.log("epoch_end", {**EPOCH_END, "loss": None})
    logger.log("experience_end", EXPERIENCE_END)
    logger.close()  # a stream it did not open stays open
    lines = [re.sub(r"^\[[0-9: -]+\] ", "", line) for line in stream.getvalue().splitlines()]
    assert lines == [
        "experience 1 epoch 1/2: loss 0.1235, 508 samples/s, 0.50 s",
        "experience 1 epoch 1/2: loss n/a, 508 samples/s, 0.50 s",
        "experience 2 done: accuracy [0.500 0.750], on seen 0.6250; train loss 0.2500, "
        "508 samples/s; memory 20 samples",
    ]
    assert re.match(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] ", stream.getvalue())


def test_text_logger_to_a_file_appends_on_request(tmp_path):
    path = tmp_path / "sub" / "log.txt"
    for append in (False, True):
        logger = TextLogger(path, append=append)
        logger.log("run_end", {"average_accuracy": 0.5})
        logger.close()
    assert path.read_text().count('run end: {"average_accuracy": 0.5}') == 2
    TextLogger(path).close()  # without append: a fresh file
    assert path.read_text() == ""


def test_json_lines_are_valid_json_with_null_for_nan(tmp_path):
    path = tmp_path / "events.jsonl"
    logger = JSONLinesLogger(path)
    logger.log("epoch_end", {**EPOCH_END, "loss": float("nan")})
    logger.log("experience_end", EXPERIENCE_END)
    logger.close()
    first, second = [json.loads(line) for line in path.read_text().splitlines()]
    assert first["event"] == "epoch_end" and first["loss"] is None
    assert isinstance(first["time"], float)
    assert {k: v for k, v in second.items() if k not in ("event", "time")} == EXPERIENCE_END


def test_csv_tables(tmp_path):
    logger = CSVLogger(tmp_path)
    logger.log("epoch_end", EPOCH_END)
    logger.log("experience_end", EXPERIENCE_END)
    logger.close()
    with open(tmp_path / "epochs.csv", newline="") as f:
        epochs = list(csv.DictReader(f))
    assert epochs == [{"experience": "0", "epoch": "1", "iterations": "8", "samples": "254",
                       "loss": "0.12345", "seconds": "0.5", "samples_per_s": "508.0"}]
    with open(tmp_path / "experiences.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == CSVLogger.EXPERIENCE_COLUMNS + ["acc_exp0", "acc_exp1"]
    assert rows[0]["memory_size"] == "20" and rows[0]["acc_exp1"] == "0.75"
    assert rows[0]["train_loss"] == "0.25" and rows[0]["eval_s"] == "0.125"
    again = CSVLogger(tmp_path, append=True)  # a resumed run: no second header
    again.log("epoch_end", {**EPOCH_END, "epoch": 2})
    again.close()
    assert (tmp_path / "epochs.csv").read_text().count("experience,epoch") == 1
    assert len((tmp_path / "epochs.csv").read_text().splitlines()) == 3


def test_progress_bar_shows_loss_and_throughput():
    stream = io.StringIO()
    short_run([ProgressBarLogger(file=stream, disable=False, mininterval=0.0)], epochs=2)
    out = stream.getvalue()
    # Experiences numbered from 1 for people, as in every other line (the records keep indices).
    for desc in ["experience 1 epoch 1/2", "experience 1 epoch 2/2", "experience 2 epoch 2/2"]:
        assert desc in out
    assert re.search(r"loss=\d+\.\d{4}, \d+ samples/s", out)


def test_progress_bar_is_silent_when_not_a_terminal():
    stream = io.StringIO()  # isatty() is False, like a redirected log
    short_run([ProgressBarLogger(file=stream)])
    assert stream.getvalue() == ""


def test_tensorboard_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    evaluator = short_run([TensorBoardLogger(tmp_path)], epochs=2)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/samples_per_s", "eval/accuracy_on_seen", "eval/accuracy/exp0",
            "eval/accuracy/exp1", "train/experience_loss", "memory/size"} <= tags
    seen = [(e.step, e.value) for e in events.Scalars("eval/accuracy/exp0")]
    assert seen == [(i, pytest.approx(row[0])) for i, row in enumerate(evaluator.accuracy_matrix)]
    losses = [e.value for e in events.Scalars("train/loss")]
    assert losses == pytest.approx(sum(evaluator.epoch_losses, []), rel=1e-6)


def test_tensorboard_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install 'clreplay\[tensorboard\]'"):
        TensorBoardLogger(tmp_path)


def test_default_loggers(tmp_path):
    assert [type(lg) for lg in default_loggers()] == [ProgressBarLogger]
    assert default_loggers(progress=False) == []
    loggers = default_loggers(tmp_path, tensorboard=False)
    assert [type(lg) for lg in loggers] == [ProgressBarLogger, TextLogger, JSONLinesLogger, CSVLogger]
    for logger in loggers:
        logger.close()
    assert {p.name for p in tmp_path.iterdir()} == {"log.txt", "events.jsonl"}
    with pytest.raises(ValueError, match="tensorboard=True needs an output folder, got output=None"):
        default_loggers(tensorboard=True)


def test_metrics_requested_by_name_reach_the_text_and_interactive_loggers():
    from clreplay.evaluation import InteractiveLogger

    record = {"phase": "eval", "step": 12, "values": {"Top1_Acc_Stream/eval_phase/test_stream/Task000": 0.5,
                                                     "Top1_Acc_MB/train_phase/train_stream/Task000": 1.0}}
    stream = io.StringIO()
    TextLogger(stream).log("metrics", record)
    assert stream.getvalue().split("] ", 1)[1] == (
        "eval metrics: Top1_Acc_MB/train_phase/train_stream/Task000 = 1.0000, "
        "Top1_Acc_Stream/eval_phase/test_stream/Task000 = 0.5000\n")
    out = io.StringIO()
    InteractiveLogger(file=out, disable=True).log("metrics", record)
    assert out.getvalue() == ("-- eval metrics (after 12 training iterations) --\n"
                              "  Top1_Acc_Stream/eval_phase/test_stream/Task000 = 0.5000\n")  # no per-batch value
