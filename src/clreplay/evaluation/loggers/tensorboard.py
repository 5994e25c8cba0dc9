"""TensorBoard scalars (the ``tensorboard`` extra)."""

from __future__ import annotations

from clreplay.evaluation.loggers.base import Logger


class TensorBoardLogger(Logger):
    """Scalars for TensorBoard in ``log_dir``: ``train/loss`` and ``train/samples_per_s``
    per epoch (step: training iterations), ``eval/accuracy_on_seen``,
    ``eval/accuracy/exp<j>``, ``train/experience_loss`` and ``memory/size`` per
    experience (step: experience index).

    Needs the ``tensorboard`` package (``pip install 'clreplay[tensorboard]'``); it is
    imported here, not with clreplay.
    """

    def __init__(self, log_dir) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError(
                "TensorBoardLogger needs the tensorboard package, which is not installed; "
                "install it with: pip install 'clreplay[tensorboard]'"
            ) from err
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, event: str, record: dict) -> None:
        add = self.writer.add_scalar
        if event == "epoch_end":
            step = record["train_iterations"]
            if record["loss"] is not None:
                add("train/loss", record["loss"], step)
            add("train/samples_per_s", record["samples_per_s"], step)
        elif event == "experience_end":
            step = record["experience"]
            if record["accuracy_on_seen"] is not None:
                add("eval/accuracy_on_seen", record["accuracy_on_seen"], step)
            for j, accuracy in enumerate(record["accuracy"]):
                if accuracy is not None:  # undefined: a test experience with no samples
                    add(f"eval/accuracy/exp{j}", accuracy, step)
            if record["train_loss"] is not None:
                add("train/experience_loss", record["train_loss"], step)
            add("memory/size", record["memory"]["size"], step)
            self.writer.flush()
        elif event == "metrics":  # requested by name: their own tags, x = training iterations
            for name, value in record["values"].items():
                if value is not None:
                    add(name, value, record["step"])

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def tensorboard_available() -> bool:
    """Whether the ``tensorboard`` package is installed (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


