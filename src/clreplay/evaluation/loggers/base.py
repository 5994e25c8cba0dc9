"""The logger contract: the events an evaluator emits, and a logger of one text stream."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO

EVENTS = ("run_start", "experience_start", "epoch_start", "epoch_end", "experience_end", "metrics",
          "run_end")


class Logger(ABC):
    """Receives the evaluator's events; see the module docstring for the records."""

    @abstractmethod
    def log(self, event: str, record: dict) -> None:
        """Handle one event."""

    def on_iteration(self, strategy) -> None:
        """Called after every training iteration (only for loggers that override it)."""

    def flush(self) -> None:
        """Push what was logged to its files (a checkpoint records their sizes)."""

    def close(self) -> None:
        """Release files; the logger is not used afterwards."""


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _open(target, append: bool) -> tuple[IO[str], bool]:
    """A text stream for ``target`` (a path, or a stream used as is) and whether we own it."""
    if hasattr(target, "write"):
        return target, False
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Line buffering: each event reaches the file at once, for `tail -f`.
    return open(path, "a" if append else "w", buffering=1, encoding="utf-8"), True


class _StreamLogger(Logger):
    """A logger writing to one text stream: a path it opens (and closes) or a stream it is given."""

    def __init__(self, target, *, append: bool = False) -> None:
        self._stream, self._owned = _open(target, append)

    def flush(self) -> None:
        if not self._stream.closed:
            self._stream.flush()

    def close(self) -> None:
        if self._owned:
            self._stream.close()


