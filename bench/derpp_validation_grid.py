"""DER++'s (alpha, beta) at lr 0.1 on a validation split of Fashion-MNIST's training set.

The methods table's one-epoch setting (stream batch 10 + memory batch 10, memory
200, MLP 784-100-100-10 with the table's initialisation, SGD lr 0.1), trained on 90%
of each class of the training set and scored on the other 10% (fixed split), three
seeds per pair; ER (reservoir updated after each experience) for reference. The test
set is not used. The default grid is the DER paper's for MNIST: alpha in {0.1, 0.2,
0.5, 1.0}, beta in {0.5, 1.0}.

    python bench/derpp_validation_grid.py --jobs 2               # the grid of the README
    python bench/derpp_validation_grid.py --pairs 0.2,1.0 0.3,0.5 --init default
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

_SRC = Path(__file__).resolve().parent.parent / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

import torch  # noqa: E402

from clreplay import ReplayPlugin, ReservoirSamplingStoragePolicy  # noqa: E402
from clreplay.benchmarks import class_incremental  # noqa: E402
from clreplay.benchmarks.files import load_idx_datasets  # noqa: E402
from clreplay.models import make_mlp  # noqa: E402
from clreplay.strategies import DERPlugin  # noqa: E402
from clreplay.training import Naive  # noqa: E402

PAIRS = ["er"] + [f"{a},{b}" for a in (0.1, 0.2, 0.5, 1.0) for b in (0.5, 1.0)]


def validation_split(root: str):
    train, _ = load_idx_datasets(root)
    generator = torch.Generator().manual_seed(12345)
    fit, held = [], []
    for c in torch.unique(train.targets).tolist():
        idx = torch.nonzero(train.targets == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        held.append(idx[: len(idx) // 10])
        fit.append(idx[len(idx) // 10:])
    return (train.subset(torch.sort(torch.cat(fit)).values),
            train.subset(torch.sort(torch.cat(held)).values))


def score(pair: str, seed: int, fit, held, init: str) -> float:
    torch.set_num_threads(1)
    bench = class_incremental(fit, held, 5, seed=None)
    model = make_mlp(784, 10, [100, 100], seed=seed, init=init)
    if pair == "er":
        plugin = ReplayPlugin(200, ReservoirSamplingStoragePolicy({}, 200), batch_size_mem=10)
    else:
        alpha, beta = (float(v) for v in pair.split(","))
        plugin = DERPlugin(200, alpha, beta, batch_size_mem=10)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=10,
                     plugins=[plugin], seed=seed, eval_mb_size=1000)
    for experience in bench.train_stream:
        strategy.train(experience)
    accuracies = strategy.eval(bench.test_stream)
    return sum(accuracies.values()) / len(accuracies)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="+", default=PAIRS, help="'er' or alpha,beta pairs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fmnist", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--init", choices=["default", "xavier"], default="xavier",
                        help="the MLP's initialisation (default: the methods table's, xavier)")
    parser.add_argument("--jobs", type=int, default=1, help="processes (each on one thread)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    fit, held = validation_split(args.fmnist)
    work = [(pair, seed, fit, held, args.init) for pair in args.pairs for seed in args.seeds]
    if args.jobs > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(args.jobs) as pool:
            scores = pool.starmap(score, work)
    else:
        scores = [score(*item) for item in work]
    rows = []
    for i, pair in enumerate(args.pairs):
        mine = scores[i * len(args.seeds):(i + 1) * len(args.seeds)]
        rows.append({"pair": pair, "init": args.init, "scores": mine, "mean": statistics.mean(mine)})
        print(json.dumps(rows[-1]), flush=True)
    print("\n| DER++ (alpha, beta) | validation accuracy, mean of seeds |\n| --- | --- |")
    for row in rows:
        print(f"| {'ER' if row['pair'] == 'er' else row['pair']} | {row['mean']:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
