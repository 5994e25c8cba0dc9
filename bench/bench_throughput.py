"""Target 1: replay training throughput of Naive + ReplayPlugin vs a bare PyTorch loop.

Both train an MLP 784-256-256-10 with SGD over a 5-experience class-incremental
synthetic stream (20,000 x 784), one epoch per experience, a memory of 1,000
samples balanced over experiences, and mini-batches that hold the same number
(+-1) of samples from the current experience and from each one in memory.

The bare loop is what one would write by hand: every experience and the memory
are pre-materialised contiguous tensors; per batch it gathers ``x[idx]`` and
``y[idx]`` for the current part and the memory part, concatenates them, and
runs forward, loss, backward and step; after each experience it subsamples the
memory with ``randperm``. Runs alternate (library, bare, bare, library, ...)
and the medians of samples forwarded per second are compared.

    python bench/bench_throughput.py            # train_mb_size 32 and 128
    python bench/bench_throughput.py --mb 32 --repeats 9
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Sequence, Tuple

import _harness as h
import torch
from torch import Tensor

from clreplay import ReplayPlugin
from clreplay.benchmarks import class_incremental, make_synthetic
from clreplay.data.experience import Benchmark
from clreplay.models import make_mlp
from clreplay.training import Naive

TARGET = 0.90


@dataclass
class Config:
    n_samples: int = 20_000
    n_features: int = 784
    n_classes: int = 10
    n_experiences: int = 5
    hidden: Tuple[int, ...] = (256, 256)
    mem_size: int = 1000
    epochs: int = 1
    lr: float = 0.01

    @classmethod
    def quick(cls) -> "Config":
        return cls(n_samples=1000, n_features=32, hidden=(16, 16), mem_size=100)


def make_stream(cfg: Config, device: str = "cpu") -> Benchmark:
    """The class-incremental stream, with every dataset (one shared storage) on ``device``."""
    train, test = make_synthetic(cfg.n_samples, cfg.n_features, cfg.n_classes, seed=0)
    return class_incremental(train.to(device), test.to(device), cfg.n_experiences, seed=0)


def materialise(bench: Benchmark) -> List[Tuple[Tensor, Tensor]]:
    """Each experience as contiguous ``(x, y)`` tensors, on the data's device."""
    out = []
    for exp in bench.train_stream:
        x, y, _ = exp.dataset.get_batch(torch.arange(len(exp.dataset)))
        out.append((x.contiguous(), y.contiguous()))
    return out


def _model_and_optimizer(cfg: Config, device: str):
    model = make_mlp(cfg.n_features, cfg.n_classes, cfg.hidden, seed=0).to(device)
    return model, torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)


def library_run(cfg: Config, bench: Benchmark, mb: int, seed: int, device: str,
                sync: Callable[[], None]) -> Tuple[int, float]:
    """Samples forwarded and seconds for the whole stream with Naive + ReplayPlugin."""
    model, opt = _model_and_optimizer(cfg, device)
    strategy = Naive(model, opt, train_mb_size=mb, train_epochs=cfg.epochs,
                     plugins=[ReplayPlugin(cfg.mem_size)], device=device, seed=seed)
    sync()
    start = h.clock()
    for experience in bench.train_stream:
        strategy.train(experience)
    sync()
    return strategy.clock.train_samples, h.clock() - start


def _shares(total: int, parts: int) -> List[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def bare_run(cfg: Config, data: Sequence[Tuple[Tensor, Tensor]], mb: int, seed: int,
             device: str, sync: Callable[[], None], *, index_select: bool = False
             ) -> Tuple[int, float]:
    """The same training written by hand over pre-materialised tensors.

    Batches are gathered with ``x[idx]`` (the loop of the target), or with
    ``x.index_select(0, idx)`` when ``index_select`` (a faster hand-written loop).
    """
    model, opt = _model_and_optimizer(cfg, device)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    memory: List[Tuple[Tensor, Tensor]] = []
    samples = 0
    sync()
    start = h.clock()
    for e, (x, y) in enumerate(data):
        n = len(x)
        shares = _shares(mb, len(memory) + 1) if memory else [mb]
        c, group_shares = shares[0], shares[1:]
        if memory:
            x_mem = torch.cat([gx for gx, _ in memory])
            y_mem = torch.cat([gy for _, gy in memory])
            sizes = [len(gx) for gx, _ in memory]
            offsets = torch.tensor([0] + sizes[:-1]).cumsum(0).tolist()
        for _ in range(cfg.epochs):
            n_batches = -(-n // c)
            perm = torch.randperm(n, generator=gen).to(device)
            if memory:
                # Each group's positions for the epoch: fresh permutations, cycled.
                cols = []
                for size, share, off in zip(sizes, group_shares, offsets):
                    need = n_batches * share
                    reps = -(-need // size)
                    pos = torch.cat([torch.randperm(size, generator=gen) for _ in range(reps)])
                    cols.append(pos[:need].view(n_batches, share) + off)
                mem_idx = torch.cat(cols, dim=1).to(device)
            for b in range(n_batches):
                idx = perm[b * c:(b + 1) * c]
                if memory:
                    if len(idx) == c:
                        m = mem_idx[b]
                    else:  # short last batch: the memory shares shrink with it
                        k, parts, col = len(idx), [], 0
                        for share in group_shares:
                            parts.append(mem_idx[b, col:col + min(share, k)])
                            col += share
                        m = torch.cat(parts)
                    if index_select:
                        xb = torch.cat([x.index_select(0, idx), x_mem.index_select(0, m)])
                        yb = torch.cat([y.index_select(0, idx), y_mem.index_select(0, m)])
                    else:
                        xb = torch.cat([x[idx], x_mem[m]])
                        yb = torch.cat([y[idx], y_mem[m]])
                elif index_select:
                    xb, yb = x.index_select(0, idx), y.index_select(0, idx)
                else:
                    xb, yb = x[idx], y[idx]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(xb), yb)
                loss.backward()
                opt.step()
                samples += len(yb)
        # Memory: mem_size // k per experience, the remainder to the newest.
        k = e + 1
        quota = cfg.mem_size // k
        sizes_new = [quota] * k
        sizes_new[-1] += cfg.mem_size - quota * k
        groups = memory + [(x, y)]
        memory = []
        for (gx, gy), size in zip(groups, sizes_new):
            keep = torch.randperm(len(gx), generator=gen)[:size].to(device)
            memory.append((gx[keep], gy[keep]))
    sync()
    return samples, h.clock() - start


def compare(cfg: Config, mb: int, repeats: int, device: str = "cpu") -> dict:
    """Alternate library and bare runs; samples/s medians and their ratio."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    bench = make_stream(cfg, device)
    data = materialise(bench)
    counts = {}

    def runner(name, fn):
        def run():
            samples, seconds = fn()
            counts.setdefault(name, samples)
            if counts[name] != samples:
                raise RuntimeError(f"{name} forwarded {samples} samples, before {counts[name]}")
            return samples / seconds
        return run

    seeds = iter(range(10_000))
    results = h.alternate({
        "clreplay": runner("clreplay", lambda: library_run(cfg, bench, mb, next(seeds), device, sync)),
        "bare": runner("bare", lambda: bare_run(cfg, data, mb, next(seeds), device, sync)),
        "bare_index_select": runner("bare_index_select", lambda: bare_run(
            cfg, data, mb, next(seeds), device, sync, index_select=True)),
    }, repeats)
    if len(set(counts.values())) != 1:
        raise RuntimeError(f"the loops forwarded different numbers of samples: {counts}")
    med = {name: h.median(values) for name, values in results.items()}
    return {"mb": mb, "samples": counts["bare"], **med,
            "ratio": med["clreplay"] / med["bare"],
            "ratio_index_select": med["clreplay"] / med["bare_index_select"], "runs": results}


def main(argv=None) -> int:
    args = h.parse_args(
        __doc__.splitlines()[0], argv,
        mb={"type": int, "nargs": "+", "default": [32, 128], "help": "train_mb_size values"},
        repeats={"type": int, "default": 5, "help": "measured runs of each loop (median)"},
    )
    cfg = Config.quick() if args.quick else Config()
    repeats = 1 if args.quick else args.repeats
    print(f"throughput: {cfg}\nmachine: {h.machine()}")
    all_ok, worst = True, float("inf")
    for mb in args.mb:
        r = compare(cfg, mb, repeats)
        ok = r["ratio"] >= TARGET
        all_ok &= ok
        worst = min(worst, r["ratio"])
        print(f"train_mb_size={mb:4d}: clreplay {r['clreplay']:9.0f} samples/s, "
              f"bare loop {r['bare']:9.0f} samples/s, ratio {r['ratio']:.3f} "
              f"(target >= {TARGET}) {h.verdict(r['ratio'], TARGET, higher_is_better=True)}"
              f"  [{r['samples']} samples a run, {repeats} runs each]")
        print(f"{'':19s}bare loop with index_select {r['bare_index_select']:9.0f} samples/s, "
              f"ratio {r['ratio_index_select']:.3f} (for information)")
        h.emit(f"throughput mb={mb}" + (" (quick)" if args.quick else ""), f">= {TARGET}", r["ratio"], "x bare loop", ok,
               clreplay_samples_per_s=r["clreplay"], bare_samples_per_s=r["bare"],
               bare_index_select_samples_per_s=r["bare_index_select"],
               ratio_index_select=r["ratio_index_select"])
    return 0 if all_ok or args.quick else 1


if __name__ == "__main__":
    raise SystemExit(main())
