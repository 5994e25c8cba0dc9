"""Loggers for people: a progress bar, a plain text log, Avalanche's interactive printout."""

from __future__ import annotations

import json
import time
from typing import IO, Optional

from clreplay.evaluation.loggers.base import Logger, _fmt, _StreamLogger
from clreplay.evaluation.results import jsonable


class ProgressBarLogger(Logger):
    """A tqdm bar per epoch showing iterations, the epoch's mean loss and samples/s.

    ``disable=None`` (the default) shows the bar only when ``file`` (stderr by
    default) is a terminal, so logs of batch jobs hold no bar. The loss is read from
    the device at most every ``mininterval`` seconds.
    """

    def __init__(
        self,
        *,
        file: Optional[IO[str]] = None,
        disable: Optional[bool] = None,
        mininterval: float = 0.5,
        leave: bool = False,
    ) -> None:
        self.file, self.disable, self.mininterval, self.leave = file, disable, mininterval, leave
        self._bar = None

    def log(self, event: str, record: dict) -> None:
        if event == "epoch_start":
            from tqdm import tqdm

            self._close_bar()
            self._bar = tqdm(
                total=record["batches"],
                desc=f"experience {record['experience'] + 1} epoch {record['epoch']}/{record['epochs']}",
                unit="it",
                file=self.file,
                disable=self.disable,
                leave=self.leave,
                mininterval=self.mininterval,
                dynamic_ncols=True,
            )
            self._started = self._last = time.perf_counter()
            self._iterations = self._samples = 0
        elif event == "epoch_end" and self._bar is not None:
            self._bar.set_postfix_str(
                f"loss={_fmt(record['loss'], '.4f')}, {record['samples_per_s']:.0f} samples/s",
                refresh=False,
            )
            self._close_bar()

    def on_iteration(self, strategy) -> None:
        bar = self._bar
        if bar is None or bar.disable:
            return
        self._iterations += 1
        self._samples += len(strategy.mb_y)
        bar.update(1)
        now = time.perf_counter()
        if now - self._last >= self.mininterval:
            self._last = now
            # One host sync per refresh, not per iteration.
            loss = strategy.epoch_loss_sum.item() / self._iterations
            rate = self._samples / max(now - self._started, 1e-9)
            bar.set_postfix_str(f"loss={loss:.4f}, {rate:.0f} samples/s", refresh=False)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        self._close_bar()


class TextLogger(_StreamLogger):
    """A plain, human-readable log: one timestamped line per event (a path or a stream)."""

    def log(self, event: str, record: dict) -> None:
        line = self._format(event, record)
        if line is not None:
            self._stream.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {line}\n")

    @staticmethod
    def _format(event: str, r: dict) -> Optional[str]:
        if event == "experience_start":
            return (f"experience {r['experience'] + 1} starts: classes {r['classes']}, "
                    f"{r['samples']} samples, {r['batches']} batches x {r['epochs']} epochs")
        if event == "epoch_end":
            return (f"experience {r['experience'] + 1} epoch {r['epoch']}/{r['epochs']}: "
                    f"loss {_fmt(r['loss'], '.4f')}, {r['samples_per_s']:.0f} samples/s, "
                    f"{r['seconds']:.2f} s")
        if event == "experience_end":
            row = " ".join(_fmt(a, ".3f") for a in r["accuracy"])
            return (f"experience {r['experience'] + 1} done: accuracy [{row}], on seen "
                    f"{_fmt(r['accuracy_on_seen'], '.4f')}; train loss {_fmt(r['train_loss'], '.4f')}, "
                    f"{r['samples_per_s']:.0f} samples/s; memory {r['memory']['size']} samples")
        if event in ("run_start", "run_end"):
            return f"{event.replace('_', ' ')}: {json.dumps(jsonable(r), sort_keys=True)}"
        if event == "metrics":
            return f"{r['phase']} metrics: " + ", ".join(
                f"{name} = {_fmt(value, '.4f')}" for name, value in sorted(r["values"].items()))
        return None


class InteractiveLogger(ProgressBarLogger):
    """What Avalanche's ``InteractiveLogger`` shows: a progress bar per epoch, and every
    metric requested by name printed as ``name = value`` when it is computed (at the end
    of an epoch, of an evaluation), to ``stdout`` by default. Per-iteration metrics
    (``Top1_Acc_MB``, running values) go to the bar's line, not to the printout.

    >>> import io
    >>> out = io.StringIO()
    >>> InteractiveLogger(file=out).log("metrics", {"phase": "eval", "step": 9, "values":
    ...     {"Top1_Acc_Stream/eval_phase/test_stream/Task000": 0.5}})
    >>> print(out.getvalue(), end="")
    -- eval metrics (after 9 training iterations) --
      Top1_Acc_Stream/eval_phase/test_stream/Task000 = 0.5000
    """

    def __init__(self, *, file: Optional[IO[str]] = None, disable: Optional[bool] = None,
                 mininterval: float = 0.5) -> None:
        super().__init__(file=file, disable=disable, mininterval=mininterval)
        self._out = file

    def log(self, event: str, record: dict) -> None:
        if event != "metrics":
            super().log(event, record)
            return
        values = {name: value for name, value in record["values"].items()
                  if not name.startswith(_PER_ITERATION)}
        if not values:
            return
        import sys

        out = self._out or sys.stdout
        lines = [f"-- {record['phase']} metrics (after {record['step']} training iterations) --"]
        lines += [f"  {name} = {_fmt(value, '.4f')}" for name, value in sorted(values.items())]
        out.write("\n".join(lines) + "\n")


#: Metrics computed at every iteration: the bar's business, not the printout's.
_PER_ITERATION = ("Top1_Acc_MB", "Loss_MB", "Top1_RunningAcc_Epoch", "RunningLoss_Epoch")


