"""Data-parallel scaling: the same run on 1, 2 and 4 processes (DistributedDataParallel, gloo, one thread each).

For ER (``ReplayPlugin``, experience-balanced memory of 1,000) and DER++
(``DERPlugin(alpha=0.2, beta=1.0)``: two memory draws per step, the stream's logits
stored), every run trains an MLP 784-1024-1024-10 with SGD and momentum on a
class-incremental synthetic stream (784 features, 10 overlapping classes, 5
experiences, one epoch) with the same *global* batches of ``--global-batch`` samples:
N processes each train on 1/N of every batch (``BaseStrategy(distributed=True)``:
every rank draws the global batch, trains on its slice through
``DistributedDataParallel``, memories are checked to be equal after every update).
The work is identical, so the ratio of training samples per second to one process's
is the scaling. The headline (the ``BENCH-RESULT`` line) is 2 processes against 1 for
ER at 2,048 samples per process (global batch 4,096), target >= 1.8x on a machine
with at least 4 free cores; on fewer cores the figures are context (two processes of
one thread each need two free cores; four need four).

Each run starts its own processes (``clreplay.launch.launch``: torch's elastic agent,
spawned, one torch thread each); only the training loop is timed (between barriers),
not the start-up nor the final evaluation. Runs alternate; medians are reported. The
machine's core count and load are printed with the figures.

    python bench/bench_distributed.py                       # ER and DER++, 1, 2 and 4 processes
    python bench/bench_distributed.py --procs 1 2 --methods er --repeats 5 --out scaling.json
    python bench/bench_distributed.py --quick               # checks that the script runs
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from typing import Dict, List, Tuple

import _harness as h
import torch

from clreplay import ReplayPlugin
from clreplay import distributed as idist
from clreplay.benchmarks import class_incremental, make_synthetic
from clreplay.launch import launch
from clreplay.models import make_mlp
from clreplay.strategies import DERPlugin
from clreplay.training import Naive

TARGET = 1.8
METHODS = ("er", "derpp")


@dataclass
class Config:
    method: str = "er"
    n_samples: int = 100_000
    n_features: int = 784
    n_classes: int = 10
    n_experiences: int = 5
    epochs: int = 1
    hidden: Tuple[int, ...] = (1024, 1024)
    mem_size: int = 1000
    global_batch: int = 4096
    lr: float = 0.01
    noise: float = 15.0  # class blobs that overlap: accuracies below 1

    @property
    def model(self) -> str:
        return "-".join(map(str, (self.n_features, *self.hidden, self.n_classes)))

    def quick(self) -> "Config":
        return replace(self, n_samples=800, n_features=32, hidden=(32, 32), mem_size=60, global_batch=64)


def _plugin(cfg: Config):
    if cfg.method == "er":
        return ReplayPlugin(cfg.mem_size)
    return DERPlugin(cfg.mem_size, alpha=0.2, beta=1.0)


def _train(cfg: Config) -> dict:
    """One run in every process of the group: train, time the loop, evaluate."""
    h.steady_malloc()  # every run alike: large blocks reused, not mapped afresh every step
    train, test = make_synthetic(cfg.n_samples, cfg.n_features, cfg.n_classes, noise=cfg.noise, seed=0)
    bench = class_incremental(train, test, cfg.n_experiences, seed=0)
    model = make_mlp(cfg.n_features, cfg.n_classes, list(cfg.hidden), seed=0)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9),
                     train_mb_size=cfg.global_batch, train_epochs=cfg.epochs, eval_mb_size=512,
                     plugins=[_plugin(cfg)], seed=0, distributed=True)
    seconds = 0.0
    with h.no_gc():
        for experience in bench.train_stream:
            idist.barrier()
            start = h.clock()
            strategy.train(experience)
            idist.barrier()
            seconds += h.clock() - start
    accuracies = strategy.eval(bench.test_stream)
    samples = strategy.clock.train_samples
    return {"processes": idist.get_world_size(), "samples": samples, "seconds": seconds,
            "samples_per_s": samples / seconds, "steps": strategy.clock.train_iterations,
            "accuracy": sum(accuracies.values()) / len(accuracies)}


def run(cfg: Config, nproc: int) -> dict:
    """One run on ``nproc`` fresh processes of one thread each; rank 0's record."""
    return launch(_train, nproc, cfg, threads=1)[0]


def compare(cfg: Config, procs: List[int], repeats: int) -> Dict[int, dict]:
    """Every process count on the same work, in alternating order; medians per count."""
    runs: Dict[int, List[dict]] = {n: [] for n in procs}
    for r in range(repeats):
        for nproc in (procs if r % 2 == 0 else procs[::-1]):
            record = run(cfg, nproc)
            runs[nproc].append(record)
            print(f"  {cfg.method}, {nproc} process(es): {record['samples_per_s']:8.0f} samples/s "
                  f"({record['samples']} samples, {record['steps']} steps, {record['seconds']:.2f} s), "
                  f"final average accuracy {record['accuracy']:.4f}", flush=True)
    return {n: {"samples_per_s": h.median([r["samples_per_s"] for r in rs]), "accuracy": rs[-1]["accuracy"],
                "steps": rs[-1]["steps"], "runs": rs} for n, rs in runs.items()}


def main(argv=None) -> int:
    args = h.parse_args(
        __doc__.splitlines()[0], argv,
        procs={"type": int, "nargs": "+", "default": [1, 2, 4], "help": "process counts (1 is the baseline)"},
        methods={"nargs": "+", "default": list(METHODS), "choices": METHODS, "help": "methods to run"},
        repeats={"type": int, "default": 3, "help": "measured runs of each (median)"},
        global_batch={"type": int, "default": 4096, "help": "samples per step, over all the processes"},
        samples={"type": int, "default": 100_000, "help": "training samples"},
        out={"default": None, "help": "also write the figures to this JSON file"},
    )
    procs = sorted(set([1] + args.procs))
    for n in procs:
        if args.global_batch % n:
            raise SystemExit(f"--global-batch must be a multiple of every process count, got "
                             f"{args.global_batch} with {n} processes")
    cores = os.cpu_count() or 1
    print(f"machine: {h.machine()}; {cores} cores, load average {os.getloadavg()[0]:.2f} at the start")
    results, batch = {}, args.global_batch
    for method in args.methods:
        cfg = Config(method=method, n_samples=args.samples, global_batch=args.global_batch)
        repeats = args.repeats
        if args.quick:
            cfg, repeats = cfg.quick(), 1
        batch = cfg.global_batch
        print(f"config: {cfg}", flush=True)
        results[method] = compare(cfg, procs, repeats)
    print(f"\n| method, MLP {Config().model} | processes | per process | samples/s | scaling | accuracy |")
    print("| --- | --- | --- | --- | --- | --- |")
    for method, by_procs in results.items():
        base = by_procs[1]["samples_per_s"]
        for n, r in by_procs.items():
            print(f"| {method} | {n} | {batch // n:,} | {r['samples_per_s']:.0f} | "
                  f"{r['samples_per_s'] / base:.2f}x | {r['accuracy']:.4f} |")
    print(f"({cores} cores; load average now {os.getloadavg()[0]:.2f}; medians of "
          f"{1 if args.quick else args.repeats}; target >= {TARGET}x for 2 processes with >= 4 free cores)")
    headline = None
    if "er" in results and 2 in results["er"]:
        er = results["er"]
        headline = er[2]["samples_per_s"] / er[1]["samples_per_s"]
        h.emit(f"distributed scaling, ER, 2 processes / 1, MLP {Config().model}, "
               f"{batch // 2} per process, {cores} cores", f">= {TARGET} (>= 4 free cores)",
               headline, "x", headline >= TARGET, cores=cores,
               scaling={m: {str(n): round(r["samples_per_s"] / rs[1]["samples_per_s"], 3) for n, r in rs.items()}
                        for m, rs in results.items()})
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": h.machine(), "cores": cores, "config": asdict(Config()),
                       "results": {m: {str(n): r for n, r in rs.items()} for m, rs in results.items()}},
                      f, indent=1)
    measured = headline is not None and cores >= 4 and not args.quick
    return 1 if measured and headline < TARGET else 0


if __name__ == "__main__":
    raise SystemExit(main())
