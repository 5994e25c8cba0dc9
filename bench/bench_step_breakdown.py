"""Where a training step's time goes, for ER and each rehearsal method, timed by hooks.

The same stream, model and batches as ``bench_methods_throughput.py`` (its
``--hidden``, ``--samples`` and batch options too). Two timing plugins, one first
and one last in the strategy's plugin list, stamp the clock at every hook of the
step, so each phase is timed as the loop runs it (the stamps cost about a
microsecond each, in every method alike):

* ``zero_grad``: from the first hook of the step to ``before_forward``;
* ``forward``, ``loss`` (the criterion: a method's own terms), ``backward``,
  ``update`` (the optimiser's step);
* ``after step``: the other plugins' ``after_training_iteration`` hooks (online
  replay stores the step's stream samples there);
* ``next batch``: from the end of one step to the start of the next (the batch
  source: memory draws and gathers).

Printed per step, in microseconds, median over ``--repeats`` runs of each method
(alternated). Informative only: nothing is gated.

    python bench/bench_step_breakdown.py
    python bench/bench_step_breakdown.py --methods der derpp --samples 30000
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Dict, List, Optional

import _harness as h
import torch
from bench_methods_throughput import METHODS, STREAM_OPTIONS, Config, plugin_for, setting_of

from clreplay.models import make_mlp
from clreplay.training import Naive
from clreplay.training.plugin import StrategyPlugin

PHASES = ["zero_grad", "forward", "loss", "backward", "update", "after step", "next batch"]
# The hook at the end of each phase: the last timer stamps it after every other plugin's.
_ENDS = {"before_forward": "zero_grad", "after_forward": "forward", "before_backward": "loss",
         "after_backward": "backward", "after_update": "update"}


class _Clock:
    """The stamps of both timing plugins and the time per phase they add up to."""

    def __init__(self) -> None:
        self.totals: Counter = Counter()
        self.steps = 0
        self.last: Optional[int] = None  # the previous stamp
        self.step_end: Optional[int] = None

    def stamp(self, phase: Optional[str]) -> None:
        now = time.perf_counter_ns()
        if phase is not None and self.last is not None:
            self.totals[phase] += now - self.last
        self.last = now


class _FirstTimer(StrategyPlugin):
    """Stamps the start of each step and of the phases that follow a hook group."""

    def __init__(self, clock: _Clock) -> None:
        self.clock = clock

    def before_training_exp(self, strategy, **kwargs):
        self.clock.step_end = None  # an experience's set-up is not a batch

    def before_training_iteration(self, strategy, **kwargs):
        clock = self.clock
        if clock.step_end is not None:
            clock.totals["next batch"] += time.perf_counter_ns() - clock.step_end
        clock.last = time.perf_counter_ns()

    def before_update(self, strategy, **kwargs):
        self.clock.stamp(None)  # the update starts here

    def after_training_iteration(self, strategy, **kwargs):
        self.clock.stamp(None)  # the other plugins' hooks start here


def _last_hook(name: str):
    def hook(self, strategy, **kwargs):
        self.clock.stamp(_ENDS[name])
    return hook


class _LastTimer(StrategyPlugin):
    """Stamps the end of each phase, after every other plugin's hook."""

    def __init__(self, clock: _Clock) -> None:
        self.clock = clock

    before_forward = _last_hook("before_forward")
    after_forward = _last_hook("after_forward")
    before_backward = _last_hook("before_backward")
    after_backward = _last_hook("after_backward")
    after_update = _last_hook("after_update")

    def after_training_iteration(self, strategy, **kwargs):
        clock = self.clock
        clock.stamp("after step")
        clock.step_end = clock.last
        clock.steps += 1


def run(method: str, cfg: Config, bench, seed: int) -> Dict[str, float]:
    """Microseconds per step in each phase, over one run."""
    clock = _Clock()
    model = make_mlp(cfg.n_features, 10, cfg.hidden, seed=seed)
    plugins = [_FirstTimer(clock), plugin_for(method, cfg, model), _LastTimer(clock)]
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=cfg.batch,
                     plugins=plugins, seed=seed)
    for experience in bench.train_stream:
        strategy.train(experience)
    return {phase: clock.totals[phase] / 1000 / max(clock.steps, 1) for phase in PHASES}


def main(argv=None) -> int:
    args = h.parse_args(
        __doc__.splitlines()[0], argv,
        methods={"nargs": "+", "choices": ["er"] + METHODS, "default": ["er", "online-er", "der", "derpp"],
                 "help": "methods to time"},
        **STREAM_OPTIONS,
    )
    cfg, repeats, bench = setting_of(args)
    print(f"step breakdown (us per step, median of {repeats}): {cfg}\nmachine: {h.machine()}")
    h.steady_malloc()
    runs: Dict[str, List[Dict[str, float]]] = {m: [] for m in args.methods}
    with h.no_gc():
        for seed in range(repeats):
            for method in args.methods:
                runs[method].append(run(method, cfg, bench, seed))
    print(f"{'method':10s} " + " ".join(f"{p:>10s}" for p in PHASES) + f" {'total':>8s}")
    for method, rs in runs.items():
        med = {p: h.median([r[p] for r in rs]) for p in PHASES}
        print(f"{method:10s} " + " ".join(f"{med[p]:10.0f}" for p in PHASES) + f" {sum(med.values()):8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
