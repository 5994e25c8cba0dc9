"""Target 5: evaluation runs batched, without gradients and without per-sample Python work.

``strategy.eval`` over the 5-experience synthetic stream (its 20,000 training
samples, to time something substantial) against a bare loop over
pre-materialised contiguous tensors: ``with torch.no_grad():`` slices of
``eval_mb_size`` samples, forward, ``argmax``, count. Runs alternate; the
median throughputs are compared (target: within 10%, as for training).

Three checks need no clock: a forward pre-hook sees every forward of
``strategy.eval`` run with gradients off and on full batches (the last may be
short); ``ClassificationDataset.__getitem__`` (the per-sample path) is never
called; and the Python calls made by ``strategy.eval`` scale with the number of
batches, not of samples (counted with ``sys.setprofile`` at two batch sizes).

    python bench/bench_eval.py
"""

from __future__ import annotations

import sys
from typing import List, Tuple

import _harness as h
import torch
from torch import Tensor

from clreplay.benchmarks import class_incremental, make_synthetic
from clreplay.data import ClassificationDataset
from clreplay.models import make_mlp
from clreplay.training import Naive

TARGET = 0.90


def bare_eval(model, data: List[Tuple[Tensor, Tensor]], mb: int) -> dict:
    """Accuracy per experience, written by hand."""
    model.eval()
    results = {}
    with torch.no_grad():
        for e, (x, y) in enumerate(data):
            correct = torch.zeros((), dtype=torch.long)
            for start in range(0, len(x), mb):
                correct += (model(x[start:start + mb]).argmax(dim=1) == y[start:start + mb]).sum()
            results[e] = correct.item() / len(x)
    model.train()
    return results


class ForwardSpy:
    """Records grad mode and batch size of every forward of ``model``."""

    def __init__(self, model):
        self.calls: List[Tuple[bool, int]] = []
        self.handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, _module, inputs):
        self.calls.append((torch.is_grad_enabled(), inputs[0].shape[0]))


def python_calls(fn) -> int:
    """Python-level function calls made while running ``fn()``."""
    count = 0

    def profiler(_frame, event, _arg):
        nonlocal count
        if event == "call":
            count += 1

    sys.setprofile(profiler)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return count


def main(argv=None) -> int:
    args = h.parse_args(
        __doc__.splitlines()[0], argv,
        mb={"type": int, "nargs": "+", "default": [256, 32], "help": "eval_mb_size values"},
        repeats={"type": int, "default": 7, "help": "measured runs of each loop (median)"},
    )
    n_samples, n_features, hidden = (1000, 32, (16, 16)) if args.quick else (20_000, 784, (256, 256))
    repeats = 1 if args.quick else args.repeats
    train, test = make_synthetic(n_samples, n_features, 10, seed=0)
    stream = class_incremental(train, test, 5, seed=0).train_stream
    data = []
    for exp in stream:
        x, y, _ = exp.dataset.get_batch(torch.arange(len(exp.dataset)))
        data.append((x.contiguous(), y.contiguous()))
    model = make_mlp(n_features, 10, hidden, seed=0)
    print(f"eval: {n_samples} x {n_features} in 5 experiences, MLP {n_features}-"
          f"{'-'.join(map(str, hidden))}-10\nmachine: {h.machine()}")
    all_ok = True

    for mb in args.mb:
        strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.01), eval_mb_size=mb)
        if strategy.eval(stream) != bare_eval(model, data, mb):
            raise AssertionError("strategy.eval and the bare loop disagree")

        def timed(fn):
            def run():
                start = h.clock()
                fn()
                return n_samples / (h.clock() - start)
            return run

        res = h.alternate({"clreplay": timed(lambda s=strategy: s.eval(stream)),
                           "bare": timed(lambda b=mb: bare_eval(model, data, b))}, repeats)
        lib, bare = h.median(res["clreplay"]), h.median(res["bare"])
        ratio = lib / bare
        ok = ratio >= TARGET
        all_ok &= ok
        print(f"eval_mb_size={mb:4d}: clreplay {lib:9.0f} samples/s, bare no_grad loop "
              f"{bare:9.0f} samples/s, ratio {ratio:.3f} (target >= {TARGET}) "
              f"{h.verdict(ratio, TARGET, higher_is_better=True)}")
        h.emit(f"eval mb={mb}" + (" (quick)" if args.quick else ""), f">= {TARGET}", ratio,
               "x bare loop", ok, clreplay_samples_per_s=lib, bare_samples_per_s=bare)

    # Structure: gradients off, whole batches, no per-sample reads, calls per batch.
    mb = args.mb[0]
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.01), eval_mb_size=mb)
    spy = ForwardSpy(model)
    per_sample_reads = 0
    original = ClassificationDataset.__getitem__

    def counting_getitem(self, i):
        nonlocal per_sample_reads
        per_sample_reads += 1
        return original(self, i)

    ClassificationDataset.__getitem__ = counting_getitem
    try:
        strategy.eval(stream)
    finally:
        ClassificationDataset.__getitem__ = original
        spy.handle.remove()
    expected_sizes = [min(mb, len(e.dataset) - s) for e in stream for s in range(0, len(e.dataset), mb)]
    grad_off = not any(grad for grad, _ in spy.calls)
    batched = [size for _, size in spy.calls] == expected_sizes
    small, large = 16, 4 * 16
    calls = {b: python_calls(lambda b=b: Naive(model, torch.optim.SGD(model.parameters(), lr=0.01),
                                                eval_mb_size=b).eval(stream)) for b in (small, large)}
    batches = {b: sum(-(-len(e.dataset) // b) for e in stream) for b in (small, large)}
    per_batch = {b: calls[b] / batches[b] for b in (small, large)}
    bare_per_batch = python_calls(lambda: bare_eval(model, data, large)) / batches[large]
    structure_ok = grad_off and batched and per_sample_reads == 0
    all_ok &= structure_ok
    print(f"structure: {len(spy.calls)} forwards, all without gradients: {grad_off}; "
          f"batch sizes as expected: {batched}; per-sample reads: {per_sample_reads} "
          f"{'PASS' if structure_ok else 'MISS'}")
    print(f"Python calls: eval_mb_size={small}: {calls[small]} ({per_batch[small]:.1f} a batch, "
          f"{calls[small] / n_samples:.2f} a sample); eval_mb_size={large}: {calls[large]} "
          f"({per_batch[large]:.1f} a batch, {calls[large] / n_samples:.2f} a sample); "
          f"the bare loop: {bare_per_batch:.1f} a batch")
    return 0 if all_ok or args.quick else 1


if __name__ == "__main__":
    raise SystemExit(main())
