"""The tuned methods table (docs/results/methods.md): every method with the settings of its shipped
preset, over seeds, with paired differences to ER, anytime accuracy, compute and wall time.

Each run is exactly ``clreplay run --preset METHOD/BENCHMARK/200 --seed S`` (the preset tuned by
``bench/tuning/tune_all.sh``), with the setting's overrides below; Naive is ER's preset without
replay. Settings (the presets' protocol is ``1ep-m200``):

* ``1ep-m200``: one epoch per experience, stream batch 10 + memory batch 10, memory 200;
* ``1ep-m500``: the same with a memory of 500 (the hyper-parameters tuned at 200);
* ``5ep-m200``: five epochs, batch 32 + 32, memory 200 (the hyper-parameters tuned for one epoch).

Datasets: ``digits`` (split_digits, its presets), ``fmnist`` (split_fashion_mnist, its presets),
``pfmnist`` (permuted_fashion_mnist, 5 experiences of the ten classes, with Fashion-MNIST's presets).
Anytime accuracy is measured ten times an experience (its points do not change the training).
Finished runs are kept in the JSON file: an interrupted table resumes where it stopped.

    python bench/tuned_table.py --datasets fmnist --settings 1ep-m200 --seeds 0 1 2 3 4 5 6 7 8 9
    python bench/tuned_table.py --check 3   # re-run 3 recorded runs from their presets: same accuracy
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import replace
from pathlib import Path

_SRC = Path(__file__).resolve().parent.parent / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

import torch  # noqa: E402

from clreplay.presets import list_presets, resolve_config  # noqa: E402
from clreplay.run import build_benchmark  # noqa: E402
from clreplay.tuning.search import anytime_report, train_run  # noqa: E402

METHODS = ["naive", "er", "der", "derpp", "xder", "er-ace", "agem", "gdumb", "icarl", "bic", "cls-er", "mir",
           "scr", "onpro"]
LABELS = {"naive": "Naive (fine-tuning)", "er": "ER", "der": "DER", "derpp": "DER++", "xder": "X-DER",
          "er-ace": "ER-ACE", "agem": "A-GEM", "gdumb": "GDumb", "icarl": "iCaRL", "bic": "BiC",
          "cls-er": "CLS-ER", "mir": "MIR", "scr": "SCR", "onpro": "OnPro"}
DATASETS = {"digits": ("split_digits", "split_digits"), "fmnist": ("split_fashion_mnist", "split_fashion_mnist"),
            "pfmnist": ("permuted_fashion_mnist", "split_fashion_mnist")}
DATASET_LABELS = {"digits": "split_digits", "fmnist": "split Fashion-MNIST", "pfmnist": "permuted Fashion-MNIST"}
#: name -> (epochs, batch size, memory batch, memory size)
SETTINGS = {"1ep-m200": (1, 10, 10, 200), "1ep-m500": (1, 10, 10, 500), "5ep-m200": (5, 32, 32, 200)}
HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "methods_tuned"


def preset_of(method: str, dataset: str) -> str:
    return f"{'er' if method == 'naive' else method}/{DATASETS[dataset][1]}/200"


def config_for(dataset: str, setting: str, method: str, seed: int):
    """The run: the method's preset, the setting's overrides, the seed."""
    epochs, batch, batch_mem, mem = SETTINGS[setting]
    config = resolve_config({"seed": seed}, preset=preset_of(method, dataset))
    overrides = {"epochs": epochs, "batch_size": batch, "mem_size": mem}
    if config.batch_size_mem is not None:
        overrides["batch_size_mem"] = batch_mem
    if method == "agem":
        config.method_options = {**config.method_options, "sample_size": batch_mem}
    if dataset == "pfmnist":
        overrides.update(benchmark="permuted_fashion_mnist", class_order=None)
    if method == "naive":
        overrides.update(replay=False, policy=None, batch_size_mem=None)
    config = replace(config, **overrides)
    return config.validate()


def _key(dataset, setting, method, seed) -> str:
    return f"{dataset}/{setting}/{method}/{seed}"


def run_one(dataset: str, setting: str, method: str, seed: int) -> dict:
    torch.set_num_threads(1)
    config = config_for(dataset, setting, method, seed)
    bench = build_benchmark(config)
    steps = math.ceil(len(bench.train_stream[0]) / config.batch_size) * config.epochs
    config = replace(config, anytime_every=max(1, steps // 10))
    strategy, seconds = train_run(config, bench)
    report = strategy.evaluator.report()
    anytime = anytime_report(strategy)
    return {"dataset": dataset, "setting": setting, "method": method, "seed": seed,
            "accuracy": report["average_accuracy"], "final_row": report["accuracy_matrix"][-1],
            "anytime_accuracy": anytime["anytime_accuracy"], "seconds": seconds - anytime["anytime_eval_s"],
            "forward_rows_per_sample": report["compute"]["forward_rows_per_sample"],
            "preset": preset_of(method, dataset), "config": {k: v for k, v in config.__dict__.items()}}


def _t95(n: int) -> float:
    from scipy.stats import t as student_t

    return float(student_t.ppf(0.975, n - 1))


def cells(records, datasets, settings, methods):
    out = {}
    for d in datasets:
        for s in settings:
            er = {r["seed"]: r["accuracy"] for r in records if (r["dataset"], r["setting"], r["method"]) == (d, s, "er")}
            for m in methods:
                runs = [r for r in records if (r["dataset"], r["setting"], r["method"]) == (d, s, m)]
                if not runs:
                    continue
                accs = [r["accuracy"] for r in runs]
                n = len(accs)
                cell = {"mean": statistics.mean(accs), "se": statistics.stdev(accs) / math.sqrt(n) if n > 1 else 0.0,
                        "seeds": n, "seconds": statistics.mean(r["seconds"] for r in runs),
                        "anytime": statistics.mean(r["anytime_accuracy"] for r in runs),
                        "rows": statistics.mean(r["forward_rows_per_sample"] for r in runs)}
                diffs = [100 * (r["accuracy"] - er[r["seed"]]) for r in runs if r["seed"] in er and m != "er"]
                if len(diffs) > 1:
                    mean = statistics.mean(diffs)
                    half = _t95(len(diffs)) * statistics.stdev(diffs) / math.sqrt(len(diffs))
                    cell["vs_er"] = (mean, mean - half, mean + half, len(diffs))
                out[(d, s, m)] = cell
    return out


def markdown(table, datasets, settings, methods) -> str:
    lines = []
    for d in datasets:
        for s in settings:
            if not any((d, s, m) in table for m in methods):
                continue
            seeds = sorted({table[(d, s, m)]["seeds"] for m in methods if (d, s, m) in table})
            lines += [f"### {DATASET_LABELS[d]}, {s} ({'/'.join(map(str, seeds))} seeds)", "",
                      "| method | final average accuracy (mean ± s.e.) | vs ER, paired (points, 95% interval) | "
                      "anytime accuracy | forward rows / stream sample | wall time (s) |",
                      "| --- | --- | --- | --- | --- | --- |"]
            for m in sorted((m for m in methods if (d, s, m) in table), key=lambda m: -table[(d, s, m)]["mean"]):
                c = table[(d, s, m)]
                vs = f"{c['vs_er'][0]:+.2f} [{c['vs_er'][1]:+.2f}, {c['vs_er'][2]:+.2f}]" if "vs_er" in c else ""
                lines.append(f"| {LABELS[m]} | {c['mean']:.3f} ± {c['se']:.3f} | {vs} | {c['anytime']:.3f} | "
                             f"{c['rows']:.1f} | {c['seconds']:.1f} |")
            lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=["digits", "fmnist"])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=["1ep-m200"])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    parser.add_argument("--out", default=str(OUT), help="prefix of the .json (every run) and .md written")
    parser.add_argument("--check", type=int, default=0, metavar="N",
                        help="re-run the first N recorded runs from their presets and compare")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    json_path, md_path = Path(args.out + ".json"), Path(args.out + ".md")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    records = json.loads(json_path.read_text())["runs"] if json_path.exists() else []
    if args.check:
        for r in records[: args.check]:
            again = run_one(r["dataset"], r["setting"], r["method"], r["seed"])
            same = again["accuracy"] == r["accuracy"]
            print(f"{_key(r['dataset'], r['setting'], r['method'], r['seed'])}: {r['accuracy']:.4f} -> "
                  f"{again['accuracy']:.4f} {'same' if same else 'DIFFERENT'}", flush=True)
        return 0
    missing = [m for m in args.methods for d in args.datasets if preset_of(m, d) not in list_presets()]
    if missing:
        raise SystemExit(f"no shipped preset for {sorted(set(missing))}: run bench/tuning/tune_all.sh first")
    done = {_key(r["dataset"], r["setting"], r["method"], r["seed"]) for r in records}
    todo = [(d, s, m, seed) for d in args.datasets for s in args.settings for seed in args.seeds
            for m in args.methods if _key(d, s, m, seed) not in done]
    print(f"{len(todo)} runs to do ({len(done)} already in {json_path})", flush=True)
    for item in todo:
        record = run_one(*item)
        records.append(record)
        json_path.write_text(json.dumps({"runs": records}, indent=1))
        print(f"{_key(*item):36s} accuracy {record['accuracy']:.4f} anytime {record['anytime_accuracy']:.4f} "
              f"{record['seconds']:6.1f} s", flush=True)
    datasets = [d for d in DATASETS if any(r["dataset"] == d for r in records)]
    settings = [s for s in SETTINGS if any(r["setting"] == s for r in records)]
    table = markdown(cells(records, datasets, settings, METHODS), datasets, settings, METHODS)
    md_path.write_text(table + "\n")
    print("\n" + table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
