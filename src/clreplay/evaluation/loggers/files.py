"""Loggers for programs: every event as a JSON line, and two CSV tables."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import List

from clreplay.evaluation.loggers.base import Logger, _StreamLogger
from clreplay.evaluation.results import jsonable


class JSONLinesLogger(_StreamLogger):
    """Every event as one JSON object per line: ``{"event": ..., "time": ..., **record}``.

    Non-finite floats are written as ``null`` so that any JSON reader can parse it.
    """

    def log(self, event: str, record: dict) -> None:
        line = json.dumps(jsonable({"event": event, "time": time.time(), **record}), allow_nan=False)
        self._stream.write(line + "\n")


class CSVLogger(Logger):
    """Two tables in ``folder``: ``epochs.csv`` (one row per epoch) and
    ``experiences.csv`` (one row per experience, with the accuracy matrix row as
    ``acc_exp0``, ``acc_exp1``, ...). Missing values are empty cells."""

    EPOCH_COLUMNS = ["experience", "epoch", "iterations", "samples", "loss", "seconds",
                     "samples_per_s"]
    EXPERIENCE_COLUMNS = ["experience", "train_loss", "train_samples", "train_s",
                          "samples_per_s", "eval_s", "memory_size", "accuracy_on_seen"]

    def __init__(self, folder, *, append: bool = False) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._append = append
        self._files: dict = {}

    def _writer(self, name: str, columns: List[str]) -> csv.DictWriter:
        if name not in self._files:
            path = self.folder / name
            fresh = not (self._append and path.exists() and path.stat().st_size > 0)
            stream = open(path, "w" if fresh else "a", newline="", encoding="utf-8", buffering=1)
            writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore")
            if fresh:
                writer.writeheader()
            self._files[name] = (stream, writer)
        return self._files[name][1]

    def log(self, event: str, record: dict) -> None:
        if event == "epoch_end":
            self._writer("epochs.csv", self.EPOCH_COLUMNS).writerow(record)
        elif event == "experience_end":
            accuracy = {f"acc_exp{j}": a for j, a in enumerate(record["accuracy"])}
            columns = self.EXPERIENCE_COLUMNS + list(accuracy)
            row = {**record, **accuracy, "memory_size": record["memory"]["size"]}
            self._writer("experiences.csv", columns).writerow(row)

    def flush(self) -> None:
        for stream, _ in self._files.values():
            stream.flush()

    def close(self) -> None:
        for stream, _ in self._files.values():
            stream.close()
        self._files.clear()


