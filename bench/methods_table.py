"""The README's table of rehearsal methods: final average accuracy (mean ± std over seeds)
and wall time of naive, ER, DER, DER++, ER-ACE, A-GEM, GDumb and iCaRL.

Benchmarks: split_digits (MLP 64-100-100-10) and class-incremental split
Fashion-MNIST (5 experiences of 2 classes, classes in label order; MLP 784-100-100-10),
read from the IDX files in ``--fmnist``. Settings (SGD without momentum, lr 0.1):

* ``1ep-m200`` / ``1ep-m500``: one epoch per experience, stream batch 10 + memory batch 10,
  memory 200 / 500;
* ``5ep-m200``: five epochs per experience, batch 32 + memory batch 32, memory 200.

Each run is built as ``clreplay run --method ...`` builds it (:func:`clreplay.run.build_strategy`)
with the method's default hyper-parameters (the papers' MNIST settings) and the MLP
initialised as the reference's (``--init xavier``, mammoth's MNISTMLP; ``--init default``
for torch's); "DER++, alpha 0.5, beta 0.5" is DER++ with the pair of the best score of
``bench/derpp_validation_grid.py``; ER is the
reservoir memory updated after each experience ("ER, online reservoir": updated after
every step, replayed from the first step on, as DER, DER++ and ER-ACE do), A-GEM's reference batch is the memory
batch, GDumb makes 128 passes over its memory at each evaluation point. Model and
strategy seeds are the run's seed. Finished runs are kept in the JSON file, so an
interrupted table resumes where it stopped.

    python bench/methods_table.py                      # the full table (about half an hour on one core)
    python bench/methods_table.py --init default       # the same with torch's initialisation
    python bench/methods_table.py --quick              # one seed, split_digits, one setting
    python bench/methods_table.py --jobs 2             # runs in 2 processes (one thread each)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Tuple

_SRC = Path(__file__).resolve().parent.parent / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

import torch  # noqa: E402

from clreplay.benchmarks import split_digits, split_mnist  # noqa: E402
from clreplay.run import RunConfig, build_strategy  # noqa: E402

METHODS = ["naive", "er", "online-er", "der", "derpp", "derpp-val", "er-ace", "agem", "gdumb", "icarl"]
#: DER++ with the (alpha, beta) of the best mean of bench/derpp_validation_grid.py (10% of
#: each class of the training set held out; lr 0.1 and the table's initialisation).
VALIDATED_DERPP = {"alpha": 0.5, "beta": 0.5}
LABELS = {"naive": "Naive (fine-tuning)", "er": "ER", "online-er": "ER, online reservoir",
          "der": "DER", "derpp": "DER++", "derpp-val": "DER++, alpha 0.5, beta 0.5 (validation grid)",
          "er-ace": "ER-ACE", "agem": "A-GEM", "gdumb": "GDumb", "icarl": "iCaRL"}
#: name -> (epochs, batch size, memory batch, memory size)
SETTINGS = {"1ep-m200": (1, 10, 10, 200), "1ep-m500": (1, 10, 10, 500), "5ep-m200": (5, 32, 32, 200)}
DATASETS = {"digits": "split_digits", "fmnist": "split Fashion-MNIST"}
HERE = Path(__file__).resolve().parent
#: The MLP's initialisation: the reference's (mammoth's MNISTMLP: Xavier-uniform weights,
#: zero biases), so that the methods are compared with its figures on one protocol.
INIT = "xavier"


def config_for(method: str, setting: str, seed: int, init: str = INIT) -> RunConfig:
    epochs, batch, batch_mem, mem = SETTINGS[setting]
    config = RunConfig(epochs=epochs, batch_size=batch, lr=0.1, momentum=0.0, hidden=[100, 100],
                       init=init, mem_size=mem, seed=seed)
    if method == "naive":
        return replace(config, replay=False).validate()
    if method == "er":
        return replace(config, policy="reservoir", batch_size_mem=batch_mem).validate()
    if method == "online-er":  # the memory protocol of DER, DER++ and ER-ACE (and the reference's ER)
        return replace(config, policy="reservoir", online=True, batch_size_mem=batch_mem).validate()
    if method == "agem":
        return replace(config, method=method, method_options={"sample_size": batch_mem}).validate()
    if method == "derpp-val":
        return replace(config, method="derpp", method_options=dict(VALIDATED_DERPP),
                       batch_size_mem=batch_mem).validate()
    if method == "gdumb":
        return replace(config, method=method).validate()
    if method == "der":  # the paper's Seq-MNIST setting with a memory of 200
        return replace(config, method=method, method_options={"alpha": 0.2},
                       batch_size_mem=batch_mem).validate()
    return replace(config, method=method, batch_size_mem=batch_mem).validate()


def load_benchmark(dataset: str, fmnist_root: str):
    # Classes in label order (seed=None), as in the reference runs; the seed varies the rest.
    if dataset == "digits":
        return split_digits(5, seed=None)
    return split_mnist(fmnist_root, 5, seed=None)


def run_one(key: Tuple[str, str, str, int, str], fmnist_root: str) -> dict:
    """Train one method on one benchmark and setting with one seed and initialisation."""
    torch.set_num_threads(1)
    dataset, setting, method, seed, init = key
    bench = load_benchmark(dataset, fmnist_root)
    config = config_for(method, setting, seed, init)
    strategy = build_strategy(config, bench)
    started = time.perf_counter()
    for experience in bench.train_stream:
        strategy.train(experience)
    seconds = time.perf_counter() - started
    final = strategy.evaluator.accuracy_matrix[-1]
    return {"dataset": dataset, "setting": setting, "method": method, "seed": seed, "init": init,
            "accuracy": sum(final) / len(final), "final_row": final, "seconds": seconds,
            "method_options": config.method_options}


def _key(record: dict) -> str:
    # Runs recorded before the initialisation was an option used torch's default.
    return (f"{record['dataset']}/{record['setting']}/{record['method']}/{record['seed']}/"
            f"{record.get('init', 'default')}")


def _naive_setting(setting: str) -> str:
    # Naive has no memory: its 1ep-m500 run is its 1ep-m200 run.
    return "1ep-m200" if setting == "1ep-m500" else setting


def summarise(records: List[dict], datasets, settings, methods, init: str = INIT) -> Dict[tuple, dict]:
    cells = {}
    records = [r for r in records if r.get("init", "default") == init]
    for dataset in datasets:
        for setting in settings:
            for method in methods:
                wanted = _naive_setting(setting) if method == "naive" else setting
                runs = [r for r in records if (r["dataset"], r["setting"], r["method"]) == (dataset, wanted, method)]
                if not runs:
                    continue
                accs = [r["accuracy"] for r in runs]
                cells[(dataset, setting, method)] = {
                    "mean": statistics.mean(accs), "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                    "seconds": statistics.mean(r["seconds"] for r in runs), "seeds": len(runs)}
    return cells


def paired_differences(records: List[dict], datasets, settings, methods, init: str = INIT) -> Dict[tuple, dict]:
    """Each method's final average accuracy minus ER's, paired by seed (the same seed gives
    both the same model initialisation and data order), in points: mean, standard error
    and 95% t-interval over the seeds both ran (two at least)."""
    from scipy.stats import t as student_t

    records = [r for r in records if r.get("init", "default") == init]
    out = {}
    for dataset in datasets:
        for setting in settings:
            er = {r["seed"]: r["accuracy"] for r in records
                  if (r["dataset"], r["setting"], r["method"]) == (dataset, setting, "er")}
            for method in methods:
                if method in ("er", "naive"):
                    continue
                runs = {r["seed"]: r["accuracy"] for r in records
                        if (r["dataset"], r["setting"], r["method"]) == (dataset, setting, method)}
                diffs = [100 * (runs[seed] - er[seed]) for seed in sorted(set(runs) & set(er))]
                if len(diffs) < 2:
                    continue
                mean, se = statistics.mean(diffs), statistics.stdev(diffs) / len(diffs) ** 0.5
                half = student_t.ppf(0.975, len(diffs) - 1) * se
                out[(dataset, setting, method)] = {"mean": mean, "se": se, "low": mean - half,
                                                   "high": mean + half, "seeds": len(diffs)}
    return out


def markdown(cells, datasets, settings, methods, paired=None) -> str:
    columns = [(d, s) for d in datasets for s in settings]
    head = "| method | " + " | ".join(f"{DATASETS[d]}, {s}" for d, s in columns) + " |"
    lines = ["Final average accuracy (mean ± std over seeds):", "", head,
             "| --- |" + " --- |" * len(columns)]
    for method in methods:
        row = [f"{cells[(d, s, method)]['mean']:.3f} ± {cells[(d, s, method)]['std']:.3f}"
               if (d, s, method) in cells else "" for d, s in columns]
        lines.append(f"| {LABELS[method]} | " + " | ".join(row) + " |")
    lines += ["", "Wall time of one run (training and the evaluation after each experience, "
              "mean over seeds, seconds, one thread):", "", head, "| --- |" + " --- |" * len(columns)]
    for method in methods:
        row = [f"{cells[(d, s, method)]['seconds']:.1f}" if (d, s, method) in cells else "" for d, s in columns]
        lines.append(f"| {LABELS[method]} | " + " | ".join(row) + " |")
    if paired:
        lines += ["", "Difference from ER in points, paired by seed (mean ± standard error, "
                  "[95% t-interval], seeds):", "", head, "| --- |" + " --- |" * len(columns)]
        for method in methods:
            if not any((d, s, method) in paired for d, s in columns):
                continue
            row = [_paired_cell(paired[(d, s, method)]) if (d, s, method) in paired else "" for d, s in columns]
            lines.append(f"| {LABELS[method]} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def _paired_cell(cell: dict) -> str:
    return (f"{cell['mean']:+.2f} ± {cell['se']:.2f} [{cell['low']:+.2f}, {cell['high']:+.2f}], "
            f"{cell['seeds']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seed 0, split_digits, 1ep-m200 only")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    parser.add_argument("--fmnist", default="/usr/share/datasets/fashion-mnist",
                        help="folder of the four Fashion-MNIST IDX files")
    parser.add_argument("--jobs", type=int, default=1, help="processes (each on one thread)")
    parser.add_argument("--init", choices=["default", "xavier"], default=INIT,
                        help="the MLP's initialisation (default: the reference's, xavier)")
    parser.add_argument("--out", default=str(HERE / "results" / "methods_table"),
                        help="prefix of the .json (every run) and .md (the table) written")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.datasets, args.settings = [0], ["digits"], ["1ep-m200"]
        args.out += "_quick"
    torch.set_num_threads(1)
    json_path = Path(args.out + ".json")
    md_path = Path(args.out + ("" if args.init == INIT else f"_{args.init}_init") + ".md")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    records = json.loads(json_path.read_text())["runs"] if json_path.exists() else []
    done = {_key(r) for r in records}
    keys = []
    for dataset in args.datasets:
        for setting in args.settings:
            for method in args.methods:
                wanted = _naive_setting(setting) if method == "naive" else setting
                for seed in args.seeds:
                    key = (dataset, wanted, method, seed, args.init)
                    if "/".join(map(str, key)) not in done and key not in keys:
                        keys.append(key)
    print(f"{len(keys)} runs to do ({len(done)} already in {json_path})", flush=True)

    def save(record):
        records.append(record)
        json_path.write_text(json.dumps({"runs": records}, indent=1))
        print(f"{_key(record):32s} accuracy {record['accuracy']:.4f}  {record['seconds']:6.1f} s", flush=True)

    if args.jobs > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(args.jobs) as pool:
            for record in pool.imap_unordered(_run_star, [(key, args.fmnist) for key in keys]):
                save(record)
    else:
        for key in keys:
            save(run_one(key, args.fmnist))
    cells = summarise(records, args.datasets, args.settings, args.methods, args.init)
    paired = paired_differences(records, args.datasets, args.settings, args.methods, args.init)
    table = markdown(cells, args.datasets, args.settings, args.methods, paired)
    md_path.write_text(table + "\n")
    print("\n" + table)
    return 0


def _run_star(item):
    return run_one(*item)


if __name__ == "__main__":
    raise SystemExit(main())
