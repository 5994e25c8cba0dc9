"""A replay memory larger than it should be in RAM: memory-mapped, trained against, bounded RSS.

Trains an MLP 784-256-256-10 (one thread) with ``ReplayPlugin`` and a
``ReservoirSamplingStoragePolicy(memmap_dir=...)`` of 2 GiB (684,000 float32
samples of 784 features) over a synthetic stream of experiences generated one at
a time (each is freed after use), with mini-batches of 64 current + 64 replayed
samples. The resident set is sampled every 50 steps and after every memory
update; the peak (the larger of that and VmHWM, where VmHWM can be reset) is
reported per phase:

1. memory-mapped, ``--gib`` (default 2 GiB);
2. memory-mapped, ``--small-gib`` (default 0.5 GiB), and
3. the same in RAM: the peak RSS of a mapped memory should not grow with its
   size (target: peak RSS of phase 1 below half the memory size), while the
   in-RAM one grows by the memory size. Phases 2 and 3 use the same seed: their
   final weights must be bit-identical, and their throughputs are compared.

    python bench/bench_memmap.py                    # about 1-2 minutes
    python bench/bench_memmap.py --gib 0.25 --small-gib 0.1
"""

from __future__ import annotations

import gc
import tempfile
from typing import Dict, List

import _harness as h
import torch

from clreplay import ReplayPlugin, ReservoirSamplingStoragePolicy, StrategyPlugin
from clreplay.benchmarks import Experience
from clreplay.data import ClassificationDataset
from clreplay.models import make_mlp
from clreplay.training import Naive

N_FEATURES, N_CLASSES, MB = 784, 10, 64
TARGET = 0.5  # peak RSS of the 2 GiB mapped run / memory size


class RssSampler(StrategyPlugin):
    """Samples VmRSS every ``every`` steps and after each experience (memory update)."""

    def __init__(self, every: int = 50) -> None:
        self.every, self.peak_kib, self.steps = every, 0, 0

    def sample(self) -> None:
        self.peak_kib = max(self.peak_kib, h.rss_kib()["VmRSS"])

    def after_training_iteration(self, strategy, **kwargs):
        self.steps += 1
        if self.steps % self.every == 0:
            self.sample()

    def after_training_exp(self, strategy, **kwargs):
        self.sample()


def experience(index: int, size: int) -> Experience:
    g = torch.Generator().manual_seed(1000 + index)
    x = torch.randn(size, N_FEATURES, generator=g)
    y = torch.randint(N_CLASSES, (size,), generator=g)
    return Experience(ClassificationDataset(x, y), index, sorted(set(y.tolist())))


def run(gib: float, chunk: int, memmap_dir) -> Dict[str, float]:
    mem_size = int(gib * 2**30) // (N_FEATURES * 4)
    n_experiences = -(-mem_size // chunk) + 1  # fill the memory, then one more
    gc.collect()
    hwm_reset = h.reset_peak_rss()
    start_kib = h.rss_kib()["VmRSS"]
    sampler = RssSampler()
    policy = ReservoirSamplingStoragePolicy({}, mem_size, memmap_dir=memmap_dir)
    model = make_mlp(N_FEATURES, N_CLASSES, (256, 256), seed=0)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.01), train_mb_size=MB,
                     plugins=[ReplayPlugin(mem_size, policy, batch_size_mem=MB), sampler], seed=0)
    seconds = 0.0
    for i in range(n_experiences):
        exp = experience(i, chunk)
        t0 = h.clock()
        strategy.train(exp)
        seconds += h.clock() - t0
        del exp
    sampler.sample()
    weights = [p.detach().clone() for p in model.parameters()]
    result = {
        "mem_size": mem_size, "mem_gib": mem_size * N_FEATURES * 4 / 2**30,
        "experiences": n_experiences, "steps": sampler.steps, "steps_per_s": sampler.steps / seconds,
        "start_mib": start_kib / 1024, "peak_mib": sampler.peak_kib / 1024,
        "hwm_mib": h.rss_kib()["VmHWM"] / 1024, "stored": len(policy), "weights": weights,
    }
    # VmHWM catches peaks between samples, when it could be reset for this phase.
    result["peak_mib"] = max(result["peak_mib"], result["hwm_mib"] if hwm_reset else 0)
    del strategy, policy, model
    gc.collect()
    return result


def show(label: str, r: Dict[str, float]) -> None:
    print(f"{label:>26s}: memory {r['mem_gib']:.2f} GiB ({r['mem_size']} samples, {r['stored']} stored), "
          f"{r['experiences']} experiences, {r['steps']} steps at {r['steps_per_s']:.0f}/s; "
          f"RSS at start {r['start_mib']:.0f} MiB, peak {r['peak_mib']:.0f} MiB "
          f"(VmHWM {r['hwm_mib']:.0f} MiB)")


def main(argv=None) -> int:
    args = h.parse_args(
        __doc__.splitlines()[0], argv,
        gib={"type": float, "default": 2.0, "help": "size of the large mapped memory, GiB"},
        **{"small-gib": {"type": float, "default": 0.5, "dest": "small_gib",
                         "help": "size of the mapped and in-RAM memories compared, GiB"}},
        chunk={"type": int, "default": 50_000, "help": "samples per experience"},
        dir={"default": None, "help": "folder for the mapped files (default: a temporary one)"},
    )
    gib, small, chunk = (0.02, 0.01, 2000) if args.quick else (args.gib, args.small_gib, args.chunk)
    print(f"memory-mapped replay memory: MLP {N_FEATURES}-256-256-{N_CLASSES}, batches of {MB}+{MB}, "
          f"{chunk} samples an experience\nmachine: {h.machine()}")
    print(f"peak RSS can be reset per phase: {h.reset_peak_rss()}")
    results: List[Dict[str, float]] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        big = run(gib, chunk, folder)
        show("memory-mapped, large", big)
        mapped = run(small, chunk, folder)
        show("memory-mapped, small", mapped)
    in_ram = run(small, chunk, None)
    show("in RAM, small", in_ram)
    results += [big, mapped, in_ram]
    ratio = big["peak_mib"] / (big["mem_gib"] * 1024)
    identical = all(torch.equal(a, b) for a, b in zip(mapped["weights"], in_ram["weights"]))
    growth_mapped = big["peak_mib"] - mapped["peak_mib"]
    speed = mapped["steps_per_s"] / in_ram["steps_per_s"]
    ok = ratio < TARGET and identical
    print(f"peak RSS / memory size, large mapped memory: {ratio:.3f} (target < {TARGET}) "
          f"{h.verdict(ratio, TARGET, higher_is_better=False)}")
    print(f"peak RSS growth from {mapped['mem_gib']:.2f} to {big['mem_gib']:.2f} GiB mapped: "
          f"{growth_mapped:+.0f} MiB; in RAM the {in_ram['mem_gib']:.2f} GiB memory peaks at "
          f"{in_ram['peak_mib']:.0f} MiB vs {mapped['peak_mib']:.0f} MiB mapped")
    print(f"mapped vs in-RAM weights bit-identical: {identical}; throughput mapped / in RAM: {speed:.3f}")
    h.emit("memmap peak RSS / memory size", f"< {TARGET}", ratio, "x memory size", ok,
           memory_gib=big["mem_gib"], peak_rss_mib=big["peak_mib"], identical_weights=identical,
           throughput_ratio=speed, in_ram_peak_rss_mib=in_ram["peak_mib"],
           mapped_small_peak_rss_mib=mapped["peak_mib"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
