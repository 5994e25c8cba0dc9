"""Running a tune: every point on every seed, on the validation split, in parallel, resumably.

Each finished run is appended to ``runs.jsonl`` in the tune's folder as soon as it
ends, so a killed tune, started again with the same command, runs only what is
missing (a run cut short is run again from its start). ``tune.json`` records what
the tune is (its base settings, points, seeds and split); a folder holding another
tune is refused. The summary ranks the points by the mean of the metric over the
seeds; every seed is run by every point (the seeds are paired: the same seed gives
every point the same initial weights, data order and validation split), so a point's
difference from the best is a paired difference, reported with its 95% t-interval.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from clreplay.checkpoint.compat import IGNORED_CONFIG_FIELDS
from clreplay.evaluation.anytime import AnytimeEvaluation
from clreplay.run import build_benchmark, build_strategy
from clreplay.run_config import RunConfig
from clreplay.strategies.registry import get_method
from clreplay.tuning.validation import validation_benchmark

#: The metrics a tune can rank by (keys of a run's results).
METRICS = ("average_accuracy", "anytime_accuracy", "average_incremental_accuracy", "task_average_accuracy")

_BENCHMARKS: Dict[str, Any] = {}  # one per worker process: building Fashion-MNIST takes seconds


def point_key(point: Mapping[str, Any]) -> str:
    """A point as a stable string (its settings, sorted).

    >>> point_key({"lr": 0.1, "alpha": 0.5})
    '{"alpha": 0.5, "lr": 0.1}'
    """
    return json.dumps(dict(point), sort_keys=True)


def config_of(base: Mapping[str, Any], point: Mapping[str, Any], seed: int) -> RunConfig:
    """The run configuration of ``point`` on ``seed``: ``base`` with the point's run settings
    and method options over it."""
    values = dict(base)
    method = get_method(values.get("method", "er"))
    options = dict(values.get("method_options") or {})
    own = {o.name for o in method.options}
    for name, value in point.items():
        if name in own:
            options[name] = value
        else:
            values[name] = value
    values["method_options"], values["seed"] = options, seed
    return RunConfig(**values).validate()


def run_point(base: Mapping[str, Any], point: Mapping[str, Any], seed: int, val_fraction: float,
              split_seed: int) -> dict:
    """Train ``point`` on ``seed`` and score it on the validation split: the run's metrics."""
    torch.set_num_threads(1)
    config = config_of(base, point, seed)
    config = dataclasses.replace(config, output=None, checkpoint_dir=None, checkpoint_every=None)
    key = json.dumps([config.benchmark, config.data, config.n_experiences, config.class_order, config.blurry,
                      seed, val_fraction, split_seed])
    if key not in _BENCHMARKS:
        _BENCHMARKS.clear()
        _BENCHMARKS[key] = validation_benchmark(build_benchmark(config), val_fraction, seed=split_seed)
    strategy, seconds = train_run(config, _BENCHMARKS[key])
    report = strategy.evaluator.report()
    record = {"point": dict(point), "seed": seed, "seconds": seconds,
              "forward_rows_per_sample": report["compute"]["forward_rows_per_sample"]}
    for name in METRICS:
        record[name] = report.get(name)
    anytime = anytime_report(strategy)
    if anytime is not None:
        record["anytime_accuracy"] = anytime["anytime_accuracy"]
    return record


def train_run(config: RunConfig, bench) -> Tuple[Any, float]:
    """The strategy ``config`` builds, trained on every experience of ``bench``, and the
    seconds its training took (its evaluations after each experience included)."""
    strategy = build_strategy(config, bench)
    started = time.perf_counter()
    for experience in bench.train_stream:
        strategy.train(experience)
    return strategy, time.perf_counter() - started


def anytime_report(strategy) -> Optional[dict]:
    """The anytime evaluation's report of a trained strategy (None without ``anytime_every``)."""
    for plugin in strategy.plugins:
        if isinstance(plugin, AnytimeEvaluation):
            return plugin.report()
    return None


def _run_star(item) -> dict:
    return run_point(*item)


class TuneFolder:
    """The files of a tune: ``tune.json`` (what it is), ``runs.jsonl`` (every finished run)."""

    def __init__(self, folder: str | Path, identity: Mapping[str, Any]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.identity = json.loads(json.dumps(dict(identity)))
        marker = self.folder / "tune.json"
        if marker.exists():
            saved = json.loads(marker.read_text())
            if saved != self.identity:
                changed = sorted(k for k in set(saved) | set(self.identity) if saved.get(k) != self.identity.get(k))
                raise ValueError(f"--out {str(self.folder)!r} holds another tune (its {', '.join(changed)} "
                                 "differ): use another folder, or the same settings to continue it")
        else:
            marker.write_text(json.dumps(self.identity, indent=1) + "\n")
        self.runs_path = self.folder / "runs.jsonl"
        if self.runs_path.exists():  # a line cut by a kill is dropped (its run is done again)
            kept = [json.dumps(r) for r in self.runs()]
            self.runs_path.write_text("".join(line + "\n" for line in kept))

    def runs(self) -> List[dict]:
        if not self.runs_path.exists():
            return []
        runs = []
        for line in self.runs_path.read_text().splitlines():
            try:
                runs.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill: that run is done again
                continue
        return runs

    def add(self, record: dict) -> None:
        with open(self.runs_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()


def run_tune(base: Mapping[str, Any], points: Sequence[Mapping[str, Any]], seeds: Sequence[int], *,
             folder: str | Path, val_fraction: float = 0.1, split_seed: int = 0, jobs: int = 1,
             log=print) -> List[dict]:
    """Run every point on every seed not already in ``folder``; return every run."""
    identity = {"base": {k: v for k, v in base.items() if k not in IGNORED_CONFIG_FIELDS},
                "points": [dict(p) for p in points], "seeds": list(seeds), "val_fraction": val_fraction,
                "split_seed": split_seed}
    store = TuneFolder(folder, identity)
    done = {(point_key(r["point"]), r["seed"]) for r in store.runs()}
    todo = [(dict(base), dict(p), s, val_fraction, split_seed) for p in points for s in seeds
            if (point_key(p), s) not in done]
    log(f"tune: {len(points)} points x {len(seeds)} seeds, {len(todo)} runs to do "
        f"({len(done)} already in {store.runs_path})")

    def finished(record: dict) -> None:
        store.add(record)
        log(f"  {point_key(record['point'])} seed {record['seed']}: "
            f"average accuracy {record['average_accuracy']:.4f} ({record['seconds']:.1f} s)")

    if jobs > 1 and len(todo) > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(min(jobs, len(todo))) as pool:
            for record in pool.imap_unordered(_run_star, todo):
                finished(record)
    else:
        for item in todo:
            finished(run_point(*item))
    return store.runs()


def _t95(n: int) -> float:
    from scipy.stats import t as student_t

    return float(student_t.ppf(0.975, n - 1))


def summarise(runs: Sequence[dict], points: Sequence[Mapping[str, Any]], seeds: Sequence[int],
              metric: str = "average_accuracy") -> List[dict]:
    """One row per point with every seed finished, best first: the metric's mean, standard
    deviation and standard error over the seeds, the mean time, and the difference from the
    best point paired by seed (mean and 95% t-interval, in points of accuracy)."""
    by_point: Dict[str, Dict[int, dict]] = {}
    for r in runs:
        by_point.setdefault(point_key(r["point"]), {})[r["seed"]] = r
    rows = []
    for point in points:
        found = by_point.get(point_key(point), {})
        if not all(s in found for s in seeds) or any(found[s].get(metric) is None for s in seeds):
            continue
        values = [found[s][metric] for s in seeds]
        n = len(values)
        rows.append({"point": dict(point), "mean": statistics.mean(values),
                     "std": statistics.stdev(values) if n > 1 else 0.0,
                     "se": statistics.stdev(values) / math.sqrt(n) if n > 1 else 0.0,
                     "seconds": statistics.mean(found[s]["seconds"] for s in seeds),
                     "values": {s: found[s][metric] for s in seeds}})
    rows.sort(key=lambda row: -row["mean"])
    if rows:
        best = rows[0]
        for row in rows:
            diffs = [100 * (row["values"][s] - best["values"][s]) for s in seeds]
            mean = statistics.mean(diffs)
            half = _t95(len(diffs)) * statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else 0.0
            row["vs_best"] = (mean, mean - half, mean + half)
    return rows


def table_csv(rows: Sequence[dict], metric: str) -> str:
    names = sorted({k for row in rows for k in row["point"]})
    lines = [",".join(names + [f"{metric}_mean", "std", "se", "vs_best_points", "vs_best_low",
                               "vs_best_high", "seconds"])]
    for row in rows:
        mean, low, high = row["vs_best"]
        lines.append(",".join([json.dumps(row["point"].get(n)) for n in names] +
                              [f"{row['mean']:.6f}", f"{row['std']:.6f}", f"{row['se']:.6f}",
                               f"{mean:.3f}", f"{low:.3f}", f"{high:.3f}", f"{row['seconds']:.2f}"]))
    return "\n".join(lines) + "\n"


def table_markdown(rows: Sequence[dict], metric: str, seeds: Sequence[int]) -> str:
    names = sorted({k for row in rows for k in row["point"]})
    head = "| " + " | ".join(names) + f" | {metric} (mean ± std, {len(seeds)} seeds) | vs best, paired " \
        "(points, 95% interval) | time (s) |"
    lines = [head, "|" + " --- |" * (len(names) + 3)]
    for row in rows:
        mean, low, high = row["vs_best"]
        values = " | ".join(str(row["point"].get(n)) for n in names)
        lines.append(f"| {values} | {row['mean']:.4f} ± {row['std']:.4f} | {mean:+.2f} [{low:+.2f}, {high:+.2f}] "
                     f"| {row['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def preset_toml(config: RunConfig, *, description: str, comments: Sequence[str] = ()) -> str:
    """A preset file that reproduces ``config`` (every field that defines the run; None
    fields, the seed and where the run writes are left out)."""
    skip = set(IGNORED_CONFIG_FIELDS) | {"seed", "data"}
    lines = [f"# {c}" for c in comments]
    lines.append(f"description = {json.dumps(description)}")
    values = dataclasses.asdict(config)
    options = values.pop("method_options")
    for name, value in values.items():
        if name in skip or value is None:
            continue
        lines.append(f"{name} = {_toml(value)}")
    if options:
        lines.append("")
        lines.append("[method_options]")
        lines += [f"{name} = {_toml(value)}" for name, value in options.items()]
    return "\n".join(lines) + "\n"


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))


def write_outputs(folder: str | Path, rows: Sequence[dict], base: Mapping[str, Any], seeds: Sequence[int],
                  metric: str, *, name: Optional[str] = None, val_fraction: float = 0.1) -> Tuple[Path, ...]:
    """``table.csv``, ``table.md`` and ``best.toml`` (the best point as a preset) in ``folder``."""
    folder = Path(folder)
    (folder / "table.csv").write_text(table_csv(rows, metric))
    (folder / "table.md").write_text(table_markdown(rows, metric, seeds))
    paths = [folder / "table.csv", folder / "table.md"]
    if rows:
        best = rows[0]
        config = config_of(base, best["point"], seeds[0])
        label = name or f"{config.method}/{config.benchmark}/{config.mem_size}"
        comments = [f"{label}: the best of {len(rows)} points of `clreplay tune` on a validation split",
                    f"({val_fraction:.0%} of each class of the training data held out; the test set unused),",
                    f"{metric} {best['mean']:.4f} ± {best['std']:.4f} over seeds {list(seeds)}; tuned: "
                    + ", ".join(f"{k} = {v}" for k, v in best["point"].items())]
        text = preset_toml(config, description=f"tuned {config.method} on {config.benchmark}, memory "
                           f"{config.mem_size} (clreplay tune)", comments=comments)
        (folder / "best.toml").write_text(text)
        paths.append(folder / "best.toml")
    return tuple(paths)
