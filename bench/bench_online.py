"""Online replay throughput: Naive + OnlineReplayPlugin vs a bare tensor loop doing the same.

Both train an MLP 784-256-256-10 with plain SGD on one CPU thread over a
class-incremental synthetic stream (784 features, 10 classes), one pass, with
stream mini-batches of 10 and 10 replayed samples per step from a reservoir of
500 samples that is updated after every step.

The bare loop is what one would write by hand: each experience is a
contiguous tensor, the reservoir is preallocated (``buf_x``, ``buf_y``); per
step it takes the stream batch ``x[idx]``, draws ``torch.randint`` indices into
the reservoir and gathers ``buf_x[j]``, concatenates, runs forward, loss,
backward and step, then updates the reservoir (a slice copy while filling,
then vectorised replacement draws). The library run is
``Naive(..., train_mb_size=10, plugins=[OnlineReplayPlugin(500, batch_size_mem=10)])``
over the same stream. Runs alternate and the medians of stream samples per
second are compared, for a few large experiences and for many tiny ones.

    python bench/bench_online.py                # target: ratio >= 0.85
    python bench/bench_online.py --repeats 9
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import _harness as h
import torch
from torch import Tensor

from clreplay import OnlineReplayPlugin
from clreplay.benchmarks import class_incremental, make_synthetic
from clreplay.data.experience import Benchmark, Experience
from clreplay.models import make_mlp
from clreplay.training import Naive

TARGET = 0.85


@dataclass
class Config:
    n_samples: int = 12_000
    n_features: int = 784
    n_classes: int = 10
    n_experiences: int = 5
    hidden: Tuple[int, ...] = (256, 256)
    mem_size: int = 500
    mb: int = 10
    mb_mem: int = 10
    lr: float = 0.01

    @classmethod
    def quick(cls) -> "Config":
        return cls(n_samples=600, n_features=32, hidden=(16, 16), mem_size=50)


def make_stream(cfg: Config) -> Benchmark:
    train, test = make_synthetic(cfg.n_samples, cfg.n_features, cfg.n_classes, seed=0)
    return class_incremental(train, test, cfg.n_experiences, seed=0)


def tiny_experiences(bench: Benchmark, size: int) -> List[Experience]:
    """The same stream cut into experiences of ``size`` samples (online: many tiny ones)."""
    out = []
    for exp in bench.train_stream:
        for start in range(0, len(exp.dataset), size):
            part = exp.dataset.subset(torch.arange(start, min(start + size, len(exp.dataset))))
            out.append(Experience(part.copy(), len(out), exp.classes_in_this_experience))
    return out


def materialise(stream: List[Experience]) -> List[Tuple[Tensor, Tensor]]:
    return [
        tuple(t.contiguous() for t in e.dataset.get_batch(torch.arange(len(e.dataset)))[:2])
        for e in stream
    ]


def _model_and_optimizer(cfg: Config):
    model = make_mlp(cfg.n_features, cfg.n_classes, cfg.hidden, seed=0)
    return model, torch.optim.SGD(model.parameters(), lr=cfg.lr)


def library_run(cfg: Config, stream: List[Experience], seed: int) -> Tuple[int, float]:
    model, opt = _model_and_optimizer(cfg)
    replay = OnlineReplayPlugin(cfg.mem_size, batch_size_mem=cfg.mb_mem)
    strategy = Naive(model, opt, train_mb_size=cfg.mb, train_epochs=1, plugins=[replay], seed=seed)
    start = h.clock()
    for experience in stream:
        strategy.train(experience)
    seconds = h.clock() - start
    return sum(len(e.dataset) for e in stream), seconds


def bare_run(cfg: Config, data: List[Tuple[Tensor, Tensor]], seed: int) -> Tuple[int, float]:
    model, opt = _model_and_optimizer(cfg)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    m = cfg.mem_size
    buf_x = torch.empty(m, cfg.n_features)
    buf_y = torch.empty(m, dtype=torch.long)
    seen = 0
    start = h.clock()
    for x, y in data:
        perm = torch.randperm(len(x), generator=gen)
        for s in range(0, len(x), cfg.mb):
            idx = perm[s:s + cfg.mb]
            xb, yb = x[idx], y[idx]
            if seen:
                j = torch.randint(min(seen, m), (cfg.mb_mem,), generator=gen)
                xs, ys = torch.cat([xb, buf_x[j]]), torch.cat([yb, buf_y[j]])
            else:
                xs, ys = xb, yb
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xs), ys)
            loss.backward()
            opt.step()
            b = len(xb)
            if seen + b <= m:
                buf_x[seen:seen + b] = xb
                buf_y[seen:seen + b] = yb
            else:
                r = (torch.rand(b, generator=gen, dtype=torch.float64)
                     * torch.arange(seen + 1, seen + b + 1, dtype=torch.float64)).long()
                keep = r < m
                buf_x[r[keep]] = xb[keep]
                buf_y[r[keep]] = yb[keep]
            seen += b
    seconds = h.clock() - start
    return seen, seconds


def compare(cfg: Config, stream: List[Experience], repeats: int) -> dict:
    data = materialise(stream)
    seeds = iter(range(10_000))

    def runner(fn):
        def run():
            samples, seconds = fn(next(seeds))
            return samples / seconds
        return run

    results = h.alternate({
        "clreplay": runner(lambda seed: library_run(cfg, stream, seed)),
        "bare": runner(lambda seed: bare_run(cfg, data, seed)),
    }, repeats)
    med = {name: h.median(values) for name, values in results.items()}
    return {**med, "ratio": med["clreplay"] / med["bare"], "runs": results}


def main(argv=None) -> int:
    args = h.parse_args(
        __doc__.splitlines()[0], argv,
        repeats={"type": int, "default": 5, "help": "measured runs of each loop (median)"},
        tiny={"type": int, "default": 50, "help": "samples per experience in the tiny-experience run"},
    )
    cfg = Config.quick() if args.quick else Config()
    repeats = 1 if args.quick else args.repeats
    print(f"online replay: {cfg}\nmachine: {h.machine()}")
    bench = make_stream(cfg)
    all_ok = True
    for label, stream in (
        (f"{cfg.n_experiences} experiences", list(bench.train_stream)),
        (f"experiences of {args.tiny}", tiny_experiences(bench, args.tiny)),
    ):
        r = compare(cfg, stream, repeats)
        ok = r["ratio"] >= TARGET
        all_ok &= ok
        print(f"{label:>18s} ({len(stream)}): clreplay {r['clreplay']:8.0f} samples/s, "
              f"bare loop {r['bare']:8.0f} samples/s, ratio {r['ratio']:.3f} "
              f"(target >= {TARGET}) {h.verdict(r['ratio'], TARGET, higher_is_better=True)}"
              f"  [{repeats} runs each]")
        h.emit(f"online replay, {label}", f">= {TARGET}", r["ratio"], "x bare loop", ok,
               clreplay_samples_per_s=r["clreplay"], bare_samples_per_s=r["bare"])
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
