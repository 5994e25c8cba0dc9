"""Weights & Biases (the ``wandb`` extra)."""

from __future__ import annotations

import importlib.util
from typing import Any, Optional

from clreplay.evaluation.loggers.base import Logger
from clreplay.evaluation.results import jsonable


def wandb_available() -> bool:
    """Whether the ``wandb`` package is installed (without importing it)."""
    return importlib.util.find_spec("wandb") is not None


class WandBLogger(Logger):
    """The run's scalars in a Weights & Biases run: ``train/loss`` and ``train/samples_per_s``
    per epoch; ``eval/accuracy_on_seen``, ``eval/accuracy/exp<j>`` (``j`` from 1, as people
    number experiences), ``train/experience_loss`` and ``memory/size`` per experience; any
    metric requested by name under its own name. Every row carries ``train_iterations``
    (the x-axis the charts use) and, per experience, ``experience``. The ``run_start``
    record's ``config`` becomes the run's config, the ``run_end`` record its summary.

    ``wandb.init`` receives ``project_name`` (its ``project``), ``run_name`` (its ``name``),
    ``dir``, ``config``, ``mode`` and ``init_kwargs`` (the first two named as in Avalanche's
    ``WandBLogger``); or pass a ``run`` already started. ``mode="offline"`` (or
    ``WANDB_MODE=offline``) writes the run to ``dir`` for ``wandb sync`` later, without
    an account; :meth:`close` finishes the run it started (not a ``run`` given). Needs the
    package: ``pip install 'clreplay[wandb]'``.
    """

    def __init__(self, project_name: str = "clreplay", run_name: Optional[str] = None, *,
                 dir: Optional[str] = None, config: Optional[dict] = None,
                 mode: Optional[str] = None, run: Any = None, **init_kwargs) -> None:
        try:
            import wandb
        except ImportError as err:
            raise ImportError(
                "WandBLogger needs the wandb package, which is not installed; install it with: "
                "pip install 'clreplay[wandb]'"
            ) from err
        self._owned = run is None  # a run given is finished by whoever started it
        if run is None:
            run = wandb.init(project=project_name, name=run_name, dir=None if dir is None else str(dir),
                             config=config, mode=mode, **init_kwargs)
        self.run = run
        self.run.define_metric("*", step_metric="train_iterations")
        self._step = 0

    def log(self, event: str, record: dict) -> None:
        if event == "run_start" and isinstance(record.get("config"), dict):
            self.run.config.update(jsonable(record["config"]), allow_val_change=True)
        elif event == "epoch_end":
            self._step = record["train_iterations"]
            row = {"train/samples_per_s": record["samples_per_s"]}
            if record["loss"] is not None:
                row["train/loss"] = record["loss"]
            self._log(row)
        elif event == "experience_end":
            row = {"experience": record["experience"] + 1, "memory/size": record["memory"]["size"]}
            if record["accuracy_on_seen"] is not None:
                row["eval/accuracy_on_seen"] = record["accuracy_on_seen"]
            for j, accuracy in enumerate(record["accuracy"]):
                if accuracy is not None:  # undefined: a test experience with no samples
                    row[f"eval/accuracy/exp{j + 1}"] = accuracy
            if record["train_loss"] is not None:
                row["train/experience_loss"] = record["train_loss"]
            self._log(row)
        elif event == "metrics":
            self._step = record["step"]
            self._log({k: v for k, v in record["values"].items() if v is not None})
        elif event == "run_end":
            self.run.summary.update({k: v for k, v in jsonable(record).items() if v is not None})

    def _log(self, row: dict) -> None:
        self.run.log({**row, "train_iterations": self._step})

    def close(self) -> None:
        if self._owned:
            self.run.finish()
