"""Target 1 on a GPU: replay throughput with the data and the memory kept on the device.

The stream's datasets are moved to CUDA once (``ClassificationDataset.to``), so
the storage policy copies memory samples on the device and every mini-batch is
gathered there; the bare loop gathers from pre-materialised CUDA tensors. Both
then run as in ``bench_throughput.py`` (alternating runs, medians), for
``train_mb_size`` 32 and 128. A second pass trains the library once under
``torch.cuda.set_sync_debug_mode("warn")`` and counts the synchronising calls
(host round trips) made during training epochs, with the ``NonFiniteLossGuard``
that ``clreplay run`` installs: expected a few per epoch (the epoch's index tensors
go to the device once; the guard reads its finiteness flag once), none per step.

Takes well under 3 minutes on one H100 (most of it CUDA start-up). Without CUDA
it says so and runs the same code on the CPU with tiny sizes, as a smoke test.

    python bench/gpu_check.py [--out results.json]
"""

from __future__ import annotations

import json
import warnings

import _harness as h
import bench_throughput as bt
import torch

from clreplay import ReplayPlugin
from clreplay.training import Naive, StrategyPlugin
from clreplay.training.guards import NonFiniteLossGuard


class SyncCounter(StrategyPlugin):
    """Counts CUDA sync warnings raised inside training epochs, and the steps taken."""

    def __init__(self, record):
        self.record, self.epoch_syncs, self.steps, self._start = record, 0, 0, 0

    def before_training_epoch(self, strategy, **kwargs):
        self._start = len(self.record)

    def after_training_iteration(self, strategy, **kwargs):
        self.steps += 1

    def after_training_epoch(self, strategy, **kwargs):
        self.epoch_syncs += sum(
            1 for w in self.record[self._start:] if "synchroniz" in str(w.message).lower()
        )


def count_syncs(cfg: bt.Config, mb: int, device: str) -> dict:
    """Synchronising calls made inside the training epochs of one library run."""
    bench = bt.make_stream(cfg, device)
    model = bt.make_mlp(cfg.n_features, cfg.n_classes, cfg.hidden, seed=0).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        counter = SyncCounter(record)
        strategy = Naive(model, opt, train_mb_size=mb, train_epochs=cfg.epochs, device=device,
                         plugins=[ReplayPlugin(cfg.mem_size), NonFiniteLossGuard(), counter],
                         seed=0)
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for experience in bench.train_stream:
                strategy.train(experience)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        total = sum(1 for w in record if "synchroniz" in str(w.message).lower())
    epochs = cfg.epochs * len(bench.train_stream)
    return {"mb": mb, "epoch_syncs": counter.epoch_syncs, "all_syncs": total,
            "steps": counter.steps, "epochs": epochs}


def main(argv=None) -> int:
    args = h.parse_args(
        __doc__.splitlines()[0], argv,
        repeats={"type": int, "default": 5, "help": "measured runs of each loop (median)"},
        out={"default": None, "help": "also write the figures to this JSON file"},
    )
    if not torch.cuda.is_available():
        print("gpu_check: CUDA is not available here (torch "
              f"{torch.__version__}); nothing was measured on a GPU. Running the same "
              "comparison on the CPU with tiny sizes, only to check that the script works.")
        device, cfg, repeats, mbs = "cpu", bt.Config.quick(), 1, [32]
    else:
        device, cfg = "cuda", (bt.Config.quick() if args.quick else bt.Config())
        repeats, mbs = (1 if args.quick else args.repeats), [32, 128]
        props = torch.cuda.get_device_properties(0)
        print(f"gpu_check: {props.name}, {props.total_memory / 2**30:.0f} GiB, "
              f"torch {torch.__version__}, CUDA {torch.version.cuda}")
    print(f"config: {cfg}\nmachine: {h.machine()}")
    results = {"device": device, "config": repr(cfg), "machine": h.machine(), "throughput": [],
               "syncs": []}
    if device == "cuda":
        results["gpu"] = torch.cuda.get_device_name(0)
    for mb in mbs:
        r = bt.compare(cfg, mb, repeats, device=device)
        print(f"{device} train_mb_size={mb:4d}: clreplay {r['clreplay']:9.0f} samples/s, "
              f"bare loop {r['bare']:9.0f} samples/s, ratio {r['ratio']:.3f} "
              f"(target >= {bt.TARGET}); bare loop with index_select "
              f"{r['bare_index_select']:9.0f} samples/s, ratio {r['ratio_index_select']:.3f}")
        r.pop("runs")
        results["throughput"].append(r)
        h.emit(f"{device} throughput mb={mb}", f">= {bt.TARGET}", r["ratio"], "x bare loop",
               r["ratio"] >= bt.TARGET, clreplay_samples_per_s=r["clreplay"],
               bare_samples_per_s=r["bare"])
    if device == "cuda":
        for mb in mbs:
            s = count_syncs(cfg, mb, device)
            results["syncs"].append(s)
            print(f"host round trips, train_mb_size={mb}: {s['epoch_syncs']} synchronising calls "
                  f"inside {s['epochs']} epochs of {s['steps']} steps in all "
                  f"({s['all_syncs']} in the whole run, memory updates included)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
