"""Data-parallel scaling: the same replay run on 1 process and on 2 processes (gloo, one thread each).

Both runs train ``Naive`` + ``ReplayPlugin`` (experience-balanced memory of 1,000) on a
class-incremental synthetic stream (20,000 x 784, 10 overlapping classes, 5
experiences, one epoch) with an MLP 784-1024-1024-10, SGD with momentum, and the same global
batches: 2 processes with b samples per rank take the same global batches of 2b
as 1 process with batch 2b (``BaseStrategy(distributed=True)``: every rank draws
the global batch, trains on its slice, gradients are summed over the ranks during
the backward pass, memories are checked to be equal after every update). The work
is identical, so the ratio of training samples per second is the scaling; the
final average accuracies of both runs are reported side by side (they differ only
by floating-point rounding). Measured for b = 64 and b = 256 by default, with the
time per step in forward, backward (with the gradient sums) and the optimiser's
step: at small b the parts that do not shrink with the batch (the optimiser's step,
which every rank makes on all the weights, and the gradient sums) weigh more.

Each run starts its own processes (``clreplay.training.distributed.launch``, one
torch thread each); only the training loop is timed (between barriers), not the
start-up nor the final evaluation. Runs alternate; medians are reported. Run it
on an otherwise idle machine (two processes need both cores).

    python bench/bench_distributed.py                  # target: 2 processes >= 1.6x one
    python bench/bench_distributed.py --batch-per-rank 64 --repeats 5 --out scaling.json
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Tuple

import _harness as h
import torch

from clreplay import ReplayPlugin
from clreplay.benchmarks import class_incremental, make_synthetic
from clreplay.models import make_mlp
from clreplay.training import Naive, StrategyPlugin
from clreplay.training import distributed as idist

TARGET = 1.6


@dataclass
class Config:
    n_samples: int = 20_000
    n_features: int = 784
    n_classes: int = 10
    n_experiences: int = 5
    epochs: int = 1
    hidden: Tuple[int, ...] = (1024, 1024)
    mem_size: int = 1000
    batch_per_rank: int = 64
    lr: float = 0.01
    noise: float = 15.0  # class blobs that overlap: accuracies below 1

    @classmethod
    def quick(cls, batch_per_rank: int) -> "Config":
        return cls(n_samples=600, n_features=32, hidden=(32, 32), mem_size=60,
                   batch_per_rank=batch_per_rank // 4)


class PhaseTimes(StrategyPlugin):
    """Seconds spent in forward, backward (with the gradient sums) and the optimiser's step."""

    def __init__(self):
        self.seconds = {"forward": 0.0, "backward": 0.0, "step": 0.0}
        self._t = 0.0

    def _lap(self, phase=None):
        now = h.clock()
        if phase is not None:
            self.seconds[phase] += now - self._t
        self._t = now

    def before_forward(self, strategy, **kwargs):
        self._lap()

    def after_forward(self, strategy, **kwargs):
        self._lap("forward")

    def before_backward(self, strategy, **kwargs):
        self._lap()

    def after_backward(self, strategy, **kwargs):
        self._lap("backward")

    def before_update(self, strategy, **kwargs):
        self._lap()

    def after_update(self, strategy, **kwargs):
        self._lap("step")


def _train(cfg: Config, out: str) -> None:
    """One run in every process of the group: train, time the loop, evaluate; rank 0 writes."""
    world = idist.get_world_size()
    h.steady_malloc()  # both runs alike: large blocks reused, not mapped afresh every step
    train, test = make_synthetic(cfg.n_samples, cfg.n_features, cfg.n_classes, noise=cfg.noise,
                                 seed=0)
    bench = class_incremental(train, test, cfg.n_experiences, seed=0)
    model = make_mlp(cfg.n_features, cfg.n_classes, list(cfg.hidden), seed=0)
    phases = PhaseTimes()
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9),
                     train_mb_size=cfg.batch_per_rank * 2, train_epochs=cfg.epochs,
                     eval_mb_size=512, plugins=[ReplayPlugin(cfg.mem_size), phases], seed=0,
                     distributed=True)
    seconds = 0.0
    with h.no_gc():
        for experience in bench.train_stream:
            idist.barrier()
            start = h.clock()
            strategy.train(experience)
            idist.barrier()
            seconds += h.clock() - start
    accuracies = strategy.eval(bench.test_stream)
    steps = strategy.clock.train_iterations
    record = {"processes": world, "samples": strategy.clock.train_samples, "seconds": seconds,
              "samples_per_s": strategy.clock.train_samples / seconds,
              "accuracy": sum(accuracies.values()) / len(accuracies), "steps": steps,
              "ms_per_step": {k: 1e3 * v / steps for k, v in phases.seconds.items()}}
    if idist.is_main():
        with open(out, "w") as f:
            json.dump(record, f)


def run(cfg: Config, nproc: int, folder: str) -> dict:
    """One run on ``nproc`` fresh processes of one thread each; rank 0's record."""
    out = os.path.join(folder, f"run{nproc}.json")
    idist.launch(_train, nproc, cfg, out, threads=1, start_method="fork")
    with open(out) as f:
        return json.load(f)


def compare(cfg: Config, repeats: int, folder: str) -> dict:
    """1 and 2 processes on the same work, alternating; medians and the ratio."""
    runs = {1: [], 2: []}
    for r in range(repeats):
        for nproc in ((1, 2) if r % 2 == 0 else (2, 1)):
            record = run(cfg, nproc, folder)
            runs[nproc].append(record)
            phases = ", ".join(f"{k} {v:.1f}" for k, v in record["ms_per_step"].items())
            print(f"  {nproc} process(es): {record['samples_per_s']:8.0f} samples/s "
                  f"({record['samples']} samples, {record['steps']} steps, {record['seconds']:.2f} s; "
                  f"ms per step: {phases}), final average accuracy {record['accuracy']:.4f}",
                  flush=True)
    one = h.median([r["samples_per_s"] for r in runs[1]])
    two = h.median([r["samples_per_s"] for r in runs[2]])
    return {"batch_per_rank": cfg.batch_per_rank, "one": one, "two": two, "ratio": two / one,
            "accuracy_one": runs[1][-1]["accuracy"], "accuracy_two": runs[2][-1]["accuracy"],
            "runs": runs}


def main(argv=None) -> int:
    args = h.parse_args(
        __doc__.splitlines()[0], argv,
        repeats={"type": int, "default": 3, "help": "measured runs of each (median)"},
        batch_per_rank={"type": int, "nargs": "+", "default": [64, 256],
                        "help": "samples per process and step (the global batch is twice that)"},
        out={"default": None, "help": "also write the figures to this JSON file"},
    )
    repeats = 1 if args.quick else args.repeats
    print(f"machine: {h.machine()}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for b in args.batch_per_rank:
            cfg = Config.quick(b) if args.quick else Config(batch_per_rank=b)
            print(f"config: {cfg}", flush=True)
            results.append(compare(cfg, repeats, folder))
    print(f"\n| MLP {'-'.join(map(str, (cfg.n_features, *cfg.hidden, cfg.n_classes)))} | global batch "
          f"| 1 process, samples/s | 2 processes, samples/s | scaling | accuracy 1 / 2 processes |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['batch_per_rank']} per rank | {2 * r['batch_per_rank']} | {r['one']:.0f} | "
              f"{r['two']:.0f} | {r['ratio']:.2f}x | {r['accuracy_one']:.4f} / {r['accuracy_two']:.4f} |")
        h.emit(f"distributed scaling 2 processes / 1, batch {r['batch_per_rank']} per rank",
               f">= {TARGET}", r["ratio"], "x", r["ratio"] >= TARGET,
               one_process_samples_per_s=r["one"], two_processes_samples_per_s=r["two"],
               accuracy_one=r["accuracy_one"], accuracy_two=r["accuracy_two"])
    print(f"(target >= {TARGET}; load average now {os.getloadavg()[0]:.2f})")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": h.machine(), "results": results}, f, indent=1)
    met = all(r["ratio"] >= TARGET for r in results)
    return 0 if (met or args.quick) else 1


if __name__ == "__main__":
    raise SystemExit(main())
