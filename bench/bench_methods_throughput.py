"""Each rehearsal method's training throughput side by side with ER's, in one process.

Every method trains the same 5-experience class-incremental synthetic stream
(60,000 x 784, 10 classes: the size of Fashion-MNIST) for one epoch with stream
batches of 10 plus 10 memory samples, a memory of 200 and an MLP 784-100-100-10
(SGD, lr 0.1): the one-epoch setting of the methods table. Runs alternate between
methods (ER, DER, DER, ER, ...) and the medians of stream samples consumed per
second of the process's CPU time are compared with ER's (CPU time, not wall time:
on a shared machine the wall clock also counts the other jobs). Target: DER and
DER++ >= 0.75x ER (they add one forward at most: DER++'s second memory batch).

With the table's small MLP a step on this CPU is mostly the fixed cost of each
autograd node and tensor operation (tens of microseconds each), which DER's extra
loss term and per-step memory update multiply; with wider hidden layers
(``--hidden 1000 1000``) the arithmetic dominates, as on an accelerator, and the
ratios show what the methods add to the computation itself.

    python bench/bench_methods_throughput.py
    python bench/bench_methods_throughput.py --hidden 1000 1000 --samples 12000 --methods der derpp
    python bench/bench_methods_throughput.py --repeats 5 --methods der derpp
    python bench/bench_methods_throughput.py --batch 32 --batch-mem 32   # the 5-epoch setting's batches
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict

import _harness as h
import torch

from clreplay import OnlineReplayPlugin, ReplayPlugin, ReservoirSamplingStoragePolicy
from clreplay.benchmarks import class_incremental, make_synthetic
from clreplay.models import make_mlp
from clreplay.strategies import AGEMPlugin, DERPlugin, ERACEPlugin, GDumbPlugin, ICaRLPlugin
from clreplay.training import Naive

TARGET = 0.75
METHODS = ["der", "derpp", "er-ace", "agem", "gdumb", "icarl", "online-er"]


@dataclass
class Config:
    n_samples: int = 60_000
    n_features: int = 784
    hidden: tuple = (100, 100)
    mem_size: int = 200
    batch: int = 10
    batch_mem: int = 10

    @classmethod
    def quick(cls) -> "Config":
        return cls(n_samples=500, n_features=32, hidden=(16, 16), mem_size=40)


def plugin_for(method: str, cfg: Config, model):
    m, k = cfg.mem_size, cfg.batch_mem
    return {
        "er": lambda: ReplayPlugin(m, ReservoirSamplingStoragePolicy({}, m), batch_size_mem=k),
        # ER on the online replay machinery DER and ER-ACE use (reservoir updated every step).
        "online-er": lambda: OnlineReplayPlugin(m, batch_size_mem=k),
        "der": lambda: DERPlugin(m, alpha=0.2, batch_size_mem=k),
        "derpp": lambda: DERPlugin(m, alpha=0.2, beta=1.0, batch_size_mem=k),
        "er-ace": lambda: ERACEPlugin(m, batch_size_mem=k),
        "agem": lambda: AGEMPlugin(m, sample_size=k),
        "gdumb": lambda: GDumbPlugin(m),
        "icarl": lambda: ICaRLPlugin(model, m, batch_size_mem=k),
    }[method]()


def run(method: str, cfg: Config, bench, seed: int) -> Dict[str, float]:
    """Stream samples and forwarded samples (stream and memory rows) per CPU second of one
    whole run (training only; no evaluation)."""
    model = make_mlp(cfg.n_features, 10, cfg.hidden, seed=seed)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=cfg.batch,
                     plugins=[plugin_for(method, cfg, model)], seed=seed)
    start = time.process_time()
    for experience in bench.train_stream:
        strategy.train(experience)
    seconds = time.process_time() - start
    return {"stream": sum(len(e.dataset) for e in bench.train_stream) / seconds,
            "forwarded": strategy.clock.train_samples / seconds}


def compare(method: str, cfg: Config, bench, repeats: int) -> Dict[str, float]:
    seeds = iter(range(10_000))
    runs = {"er": [], method: []}
    h.alternate({name: (lambda name=name: runs[name].append(run(name, cfg, bench, next(seeds))) or 0.0)
                 for name in runs}, repeats)
    med = {name: {key: h.median([r[key] for r in rs[-repeats:]]) for key in ("stream", "forwarded")}
           for name, rs in runs.items()}
    return {"er": med["er"]["stream"], "method": med[method]["stream"],
            "ratio": med[method]["stream"] / med["er"]["stream"],
            "forwarded_ratio": med[method]["forwarded"] / med["er"]["forwarded"]}


#: The options of the stream, model and batches (shared with bench_step_breakdown.py).
STREAM_OPTIONS = {
    "repeats": {"type": int, "default": 3, "help": "measured runs of each method (median)"},
    "batch": {"type": int, "default": 10, "help": "stream samples per batch"},
    "batch_mem": {"type": int, "default": 10, "help": "memory samples per batch (and per draw)"},
    "hidden": {"type": int, "nargs": "+", "default": list(Config.hidden),
               "help": "widths of the MLP's hidden layers (default: the table's 100 100)"},
    "samples": {"type": int, "default": Config.n_samples, "help": "samples in the stream (5 experiences)"},
}


def setting_of(args):
    """The config, the runs per method and the 5-experience stream the parsed
    :data:`STREAM_OPTIONS` ask for (non-positive values refused, naming the flag)."""
    for flag, values in (("--hidden", args.hidden), ("--samples", [args.samples]), ("--batch", [args.batch]),
                         ("--batch-mem", [args.batch_mem]), ("--repeats", [args.repeats])):
        if min(values) < 1:
            raise SystemExit(f"{flag} must be positive, got {' '.join(map(str, values))}")
    cfg = Config.quick() if args.quick else Config(n_samples=args.samples, hidden=tuple(args.hidden),
                                                   batch=args.batch, batch_mem=args.batch_mem)
    train, test = make_synthetic(cfg.n_samples, cfg.n_features, 10, seed=0)
    return cfg, 1 if args.quick else args.repeats, class_incremental(train, test, 5, seed=0)


def main(argv=None) -> int:
    args = h.parse_args(
        __doc__.splitlines()[0], argv,
        methods={"nargs": "+", "choices": METHODS, "default": METHODS, "help": "methods to compare with ER"},
        **STREAM_OPTIONS,
    )
    cfg, repeats, bench = setting_of(args)
    print(f"methods throughput: {cfg}\nmachine: {h.machine()}")
    h.steady_malloc()
    all_ok = True
    for method in args.methods:
        with h.no_gc():
            r = compare(method, cfg, bench, repeats)
        gated = method in ("der", "derpp")
        ok = r["ratio"] >= TARGET or not gated
        all_ok &= ok
        note = (f"(target >= {TARGET}) {h.verdict(r['ratio'], TARGET, higher_is_better=True)}" if gated
                else "(for information)")
        print(f"{method:9s} {r['method']:8.0f} stream samples/s, ER {r['er']:8.0f}: ratio {r['ratio']:.3f} {note}; "
              f"forwarded samples/s ratio {r['forwarded_ratio']:.3f}", flush=True)
        if gated:
            setting = "" if cfg.hidden == Config.hidden else f", hidden {'x'.join(map(str, cfg.hidden))}"
            h.emit(f"{method} vs ER throughput{setting}" + (" (quick)" if args.quick else ""), f">= {TARGET}",
                   r["ratio"], "x ER", ok, method_samples_per_s=r["method"], er_samples_per_s=r["er"],
                   forwarded_ratio=r["forwarded_ratio"])
    return 0 if all_ok or args.quick else 1


if __name__ == "__main__":
    raise SystemExit(main())
