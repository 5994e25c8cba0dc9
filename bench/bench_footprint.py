"""Target 4: the memory holds its samples and nothing else; peak RSS stays flat.

1. References. Every experience gets a storage tensor of its own; the script
   keeps only weak references to them while ``Naive + ReplayPlugin`` trains on
   the stream. After each experience, every *past* experience must be gone
   (the current one is still the strategy's ``experience``), and each memory
   group's storage must hold exactly the group's samples. Checked for the
   experience-balanced policy and the class-balanced one (random and herding).
2. A long stream. 50 experiences (1,000 x 784 samples each, generated on the
   fly) are trained with a memory of 2,000 samples. After each experience the
   script reads the peak RSS of the experience from /proc/self/status (VmHWM,
   reset before each experience) and adds up the bytes of every live tensor
   (found through ``gc.get_objects``, each storage counted once). After the
   memory fills, from the 10 experiences after the fill to the last 10:
   - live tensor bytes may grow by at most 5% of the memory's own bytes (they
     are constant in practice; keeping past experiences would add one
     experience's data, 3 MiB, per experience);
   - the median peak RSS may grow by at most 5% (glibc's heap creeps by a few
     MiB as memory groups shrink below its mmap threshold; that is not data
     kept alive, and it levels off).

    python bench/bench_footprint.py
"""

from __future__ import annotations

import gc
import statistics
import warnings
import weakref
from typing import Iterator, List

import _harness as h
import torch

from clreplay import ClassBalancedStoragePolicy, HerdingSelectionStrategy, ReplayPlugin
from clreplay.benchmarks import Experience
from clreplay.data import ClassificationDataset
from clreplay.models import feature_layer_name, make_mlp
from clreplay.training import Naive


def experiences(n_exp: int, n_per_exp: int, n_features: int, classes_per_exp: int,
                seed: int = 0) -> Iterator[Experience]:
    """Fresh tensors for every experience, drawn when asked for (nobody else holds them)."""
    gen = torch.Generator().manual_seed(seed)
    for e in range(n_exp):
        classes = torch.arange(e * classes_per_exp, (e + 1) * classes_per_exp)
        y = classes[torch.arange(n_per_exp) % classes_per_exp]
        x = torch.randn(n_per_exp, n_features, generator=gen) + y.unsqueeze(1).float() * 0.01
        yield Experience(ClassificationDataset(x, y), e, classes.tolist())


def make_strategy(policy: str, n_features: int, n_classes: int, mem_size: int) -> Naive:
    model = make_mlp(n_features, n_classes, (64,), seed=0)
    # 256 memory samples beside every 256 current ones: a few steps per experience
    # (balanced batches over 50 experiences would hold ~5 current samples each).
    if policy == "experience":
        replay = ReplayPlugin(mem_size, batch_size_mem=256)
    else:
        chooser = (HerdingSelectionStrategy(model, feature_layer_name(model))
                   if policy == "class-herding" else None)
        policy_obj = ClassBalancedStoragePolicy({}, mem_size, selection_strategy=chooser)
        replay = ReplayPlugin(mem_size, policy_obj, batch_size_mem=256)
    return Naive(model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
                 train_mb_size=256, eval_mb_size=256, plugins=[replay], seed=0)


def memory_groups(strategy: Naive) -> List[ClassificationDataset]:
    replay = next(p for p in strategy.plugins if isinstance(p, ReplayPlugin))
    return list(replay.ext_mem.values())


def check_references(policy: str, n_exp: int, n_per_exp: int, n_features: int) -> dict:
    """Past experiences alive after each experience, and memory storage rows vs samples."""
    strategy = make_strategy(policy, n_features, 2 * n_exp, mem_size=n_per_exp)
    refs: List[weakref.ref] = []
    alive_past, extra_rows = 0, 0
    for experience in experiences(n_exp, n_per_exp, n_features, 2):
        refs.append(weakref.ref(experience.dataset.storage))
        strategy.train(experience)
        del experience
        gc.collect()
        alive_past += sum(ref() is not None for ref in refs[:-1])
        for group in memory_groups(strategy):
            extra_rows += group.storage.shape[0] - len(group)
    return {"policy": policy, "alive_past": alive_past, "extra_rows": extra_rows}


def live_tensor_mib() -> float:
    """MiB of every tensor storage Python can reach (each storage counted once)."""
    seen, total = set(), 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # isinstance() on some torch objects warns
        for obj in gc.get_objects():
            if isinstance(obj, torch.Tensor):
                storage = obj.untyped_storage()
                if storage.data_ptr() not in seen:
                    seen.add(storage.data_ptr())
                    total += storage.nbytes()
    return total / 2**20


def rss_stream(policy: str, n_exp: int, n_per_exp: int, n_features: int, mem_size: int) -> dict:
    """Peak RSS and live tensor MiB after each experience of a long stream."""
    strategy = make_strategy(policy, n_features, 2 * n_exp, mem_size)
    peaks, live = [], []
    for experience in experiences(n_exp, n_per_exp, n_features, 2, seed=1):
        reset = h.reset_peak_rss()  # no gc.collect() here: it takes ~0.15 s with torch loaded
        strategy.train(experience)
        del experience
        rss = h.rss_kib()
        peaks.append((rss["VmHWM"] if reset else rss["VmRSS"]) / 1024)
        live.append(live_tensor_mib())
    return {"peaks": peaks, "live": live, "peak_reset": reset}


def main(argv=None) -> int:
    args = h.parse_args(__doc__.splitlines()[0], argv)
    if args.quick:
        ref_exp, ref_n, n_exp, n_per_exp, n_features, mem_size, k = 4, 50, 12, 100, 32, 200, 3
    else:
        ref_exp, ref_n, n_exp, n_per_exp, n_features, mem_size, k = 6, 300, 50, 1000, 784, 2000, 10
    print(f"footprint: references over {ref_exp} experiences; RSS over {n_exp} experiences "
          f"of {n_per_exp} x {n_features}, memory of {mem_size}\nmachine: {h.machine()}")
    all_ok = True
    for policy in ("experience", "class-random", "class-herding"):
        r = check_references(policy, ref_exp, ref_n, n_features)
        ok = r["alive_past"] == 0 and r["extra_rows"] == 0
        all_ok &= ok
        print(f"references ({policy:13s}): past experiences still alive {r['alive_past']}, "
              f"storage rows beyond the stored samples {r['extra_rows']}  "
              f"{'PASS' if ok else 'MISS'}")
    mem_mib = mem_size * n_features * 4 / 2**20
    fill = -(-mem_size // n_per_exp)  # experiences until the memory is full
    window = slice(fill + 1, fill + 1 + k)
    worst_rss = 0.0
    for policy in ("experience", "class-random"):
        r = rss_stream(policy, n_exp, n_per_exp, n_features, mem_size)
        live_growth = statistics.median(r["live"][-k:]) - statistics.median(r["live"][window])
        after_fill, last = statistics.median(r["peaks"][window]), statistics.median(r["peaks"][-k:])
        rss_growth = (last - after_fill) / after_fill
        live_ok, rss_ok = live_growth <= 0.05 * mem_mib, rss_growth <= 0.05
        all_ok &= live_ok and rss_ok
        worst_rss = max(worst_rss, rss_growth)
        kind = "peak RSS (VmHWM)" if r["peak_reset"] else "RSS (VmRSS)"
        print(f"{policy:12s}: live tensors {statistics.median(r['live'][window]):6.2f} MiB after "
              f"the fill, {statistics.median(r['live'][-k:]):6.2f} MiB at the end, growth "
              f"{live_growth:+.2f} MiB (target <= {0.05 * mem_mib:.2f}) {'PASS' if live_ok else 'MISS'}")
        print(f"{'':12s}  {kind} {after_fill:6.1f} MiB after the fill, {last:6.1f} MiB at the "
              f"end, growth {100 * rss_growth:+.1f}% (target <= 5%) {'PASS' if rss_ok else 'MISS'}")
        print(f"{'':12s}  {kind} MiB per experience:", " ".join(f"{p:.0f}" for p in r["peaks"]))
    h.emit("footprint" + (" (quick)" if args.quick else ""), "RSS growth <= 5%",
           100 * worst_rss, "% RSS growth, live tensors flat", all_ok)
    return 0 if all_ok or args.quick else 1


if __name__ == "__main__":
    raise SystemExit(main())
