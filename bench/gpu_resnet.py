"""ResNet-18 on a GPU: each method's step against a bare loop, eager and compiled, fp32 and bf16.

Synthetic CIFAR-shaped ``uint8`` images on the device, ResNet-18 at full width (64), stream
batches of 32 plus 32 samples replayed from an online reservoir of 200. Every run trains
two experiences: a short first one (``--warmup`` samples: the reservoir fills, compiled
models compile) and a second one of ``--samples`` samples, timed between two
``torch.cuda.synchronize()``. Rows: a bare hand-written online ER loop (eager and
compiled), clreplay's ER (``OnlineReplayPlugin``, also with crop-and-flip augmentation),
DER++, ER-ACE and X-DER, each eager and compiled (``mode="reduce-overhead"``: CUDA graphs),
each in fp32 and bf16 autocast. Targets (issue 22): ER >= 0.95x the bare eager loop,
DER++ >= 0.67x ER, ER-ACE >= 0.90x ER, augmentation costs <= 10%, compiled ER at 32 + 32
>= 2x eager ER. Each target ends in a ``BENCH-RESULT`` line.

    python bench/gpu_resnet.py                       # about 4 minutes on one H200
    python bench/gpu_resnet.py --samples 50000       # a full CIFAR epoch per run
    python bench/gpu_resnet.py --methods er derpp --precisions bf16 --modes eager

Without CUDA it says so and runs a tiny smoke version on the CPU (narrow network, few
samples, eager fp32 only) that measures nothing but shows the script works.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Dict, List, Optional

import _harness as h
import torch
import torch.nn.functional as F

from clreplay import OnlineReplayPlugin
from clreplay.data import ClassificationDataset, Experience
from clreplay.data.augment import standard_augmentation
from clreplay.models import make_resnet18
from clreplay.strategies import DERPlugin, ERACEPlugin, XDERPlugin
from clreplay.training import AugmentationPlugin, Naive

METHODS = ["er", "er-augment", "derpp", "er-ace", "xder"]
MEMORY, BATCH = 200, 32


def stream(n_warmup: int, n: int, device, seed: int = 0) -> List[Experience]:
    """Two experiences of random uint8 images (classes 0-4, then 5-9), on ``device``."""
    g = torch.Generator().manual_seed(seed)
    experiences = []
    for index, (size, first) in enumerate(((n_warmup, 0), (n, 5))):
        x = torch.randint(0, 256, (size, 3, 32, 32), dtype=torch.uint8, generator=g)
        y = torch.randint(first, first + 5, (size,), generator=g)
        data = ClassificationDataset(x, y).to(device)
        experiences.append(Experience(data, index, list(range(first, first + 5))))
    return experiences


def plugins_for(method: str) -> list:
    return {
        "er": lambda: [OnlineReplayPlugin(MEMORY, batch_size_mem=BATCH)],
        "er-augment": lambda: [OnlineReplayPlugin(MEMORY, batch_size_mem=BATCH),
                               AugmentationPlugin(standard_augmentation(seed=0))],
        "derpp": lambda: [DERPlugin(MEMORY, alpha=0.1, beta=0.5, batch_size_mem=BATCH)],
        "er-ace": lambda: [ERACEPlugin(MEMORY, batch_size_mem=BATCH)],
        "xder": lambda: [XDERPlugin(MEMORY, batch_size_mem=BATCH)],
    }[method]()


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run_method(method: str, experiences, width: int, device, precision: str, compile_mode: str) -> float:
    """Stream samples per second of the second experience."""
    model = make_resnet18((3, 32, 32), 10, seed=0, nf=width)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.03), train_mb_size=BATCH,
                     eval_mb_size=256, device=device, plugins=plugins_for(method), seed=0,
                     precision=precision, compile=compile_mode)
    strategy.train(experiences[0])
    seconds = timed(lambda: strategy.train(experiences[1]), device)
    return len(experiences[1].dataset) / seconds


def run_bare(experiences, width: int, device, precision: str, compile_mode: str) -> float:
    """Hand-written online ER: the stream batch plus 32 reservoir samples, one forward."""
    model = make_resnet18((3, 32, 32), 10, seed=0, nf=width).to(device)
    forward = model if compile_mode == "off" else torch.compile(model, mode=compile_mode)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.03)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    buffer_x = torch.zeros((MEMORY, 3, 32, 32), dtype=torch.uint8, device=device)
    buffer_y = torch.zeros(MEMORY, dtype=torch.long, device=device)
    g = torch.Generator().manual_seed(0)
    state = {"seen": 0}

    def epoch(data):
        order = torch.randperm(len(data), generator=g).to(device)
        x_all, y_all = data.storage, data.targets_storage
        for start in range(0, len(data), BATCH):
            rows = order[start : start + BATCH]
            x, y = x_all[rows], y_all[rows]
            filled = min(state["seen"], MEMORY)
            if filled:
                picks = torch.randperm(filled, generator=g)[:BATCH].to(device)
                x, y = torch.cat([x, buffer_x[picks]]), torch.cat([y, buffer_y[picks]])
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = F.cross_entropy(forward(x), y)
            loss.backward()
            optimizer.step()
            n = len(rows)  # reservoir update: the slots are decided on the host
            slots, positions = [], []
            for i in range(n):
                seen = state["seen"] + i
                j = seen if seen < MEMORY else int(torch.randint(seen + 1, (1,), generator=g))
                if j < MEMORY:
                    slots.append(j)
                    positions.append(i)
            if slots:
                slots_t, positions_t = torch.tensor(slots, device=device), torch.tensor(positions, device=device)
                buffer_x[slots_t] = x[: n][positions_t]
                buffer_y[slots_t] = y[: n][positions_t]
            state["seen"] += n

    epoch(experiences[0].dataset)
    seconds = timed(lambda: epoch(experiences[1].dataset), device)
    return len(experiences[1].dataset) / seconds


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20_000, help="samples of the timed experience")
    parser.add_argument("--warmup", type=int, default=2_000, help="samples of the first, untimed experience")
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--modes", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"])
    parser.add_argument("--width", type=int, default=64, help="ResNet-18 base filters (64: full width)")
    parser.add_argument("--out", default=None, help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    for name in ("samples", "warmup", "width"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive int, got {getattr(args, name)}")
    if torch.cuda.is_available():
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
    else:
        print("CUDA is not available here: running the CPU smoke version (width 4, 96 samples, eager "
              "fp32); nothing was measured on a GPU")
        device = torch.device("cpu")
        torch.set_num_threads(1)
        args.samples, args.warmup, args.width = 96, 64, 4
        args.precisions, args.modes = ["fp32"], ["eager"]
    print(f"machine: {h.machine()}, device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}")
    experiences = stream(args.warmup, args.samples, device)
    rows: List[Dict] = []
    results: Dict[tuple, float] = {}
    for precision in args.precisions:
        for mode in args.modes:
            compile_mode = "off" if mode == "eager" else "reduce-overhead"
            results[("bare", mode, precision)] = run_bare(experiences, args.width, device, precision, compile_mode)
            for method in args.methods:
                results[(method, mode, precision)] = run_method(method, experiences, args.width, device,
                                                                precision, compile_mode)
    print(f"\n{'run':<12}{'mode':<10}{'precision':<11}{'samples/s':>11}{'vs bare':>9}{'vs ER':>8}")
    for (method, mode, precision), rate in results.items():
        bare = results.get(("bare", "eager", precision))
        er = results.get(("er", mode, precision))
        row = {"method": method, "mode": mode, "precision": precision, "samples_per_s": rate,
               "vs_bare_eager": rate / bare if bare else None, "vs_er": rate / er if er else None}
        rows.append(row)
        print(f"{method:<12}{mode:<10}{precision:<11}{rate:>11.0f}"
              f"{row['vs_bare_eager'] or float('nan'):>9.2f}{row['vs_er'] or float('nan'):>8.2f}")
    measured = device.type == "cuda"
    for precision in args.precisions:
        def ratio(a, b):
            return results[a] / results[b] if a in results and b in results else None

        checks = [
            ("ER vs the bare eager loop", ratio(("er", "eager", precision), ("bare", "eager", precision)), 0.95),
            ("DER++ vs ER", ratio(("derpp", "eager", precision), ("er", "eager", precision)), 0.67),
            ("ER-ACE vs ER", ratio(("er-ace", "eager", precision), ("er", "eager", precision)), 0.90),
            ("ER with augmentation vs ER", ratio(("er-augment", "eager", precision), ("er", "eager", precision)),
             0.90),
            ("compiled ER vs eager ER", ratio(("er", "compiled", precision), ("er", "eager", precision)), 2.0),
        ]
        for name, value, target in checks:
            if value is None:
                continue
            print(h.RESULT_PREFIX + json.dumps({
                "name": f"{name} ({precision})", "target": f">= {target}", "value": value, "unit": "x",
                "passed": value >= target if measured else None, "measured": measured,
                "machine": h.machine()}))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": device.type, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
