"""Text reports: the accuracy matrix table, the metrics, several runs side by side."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from clreplay.evaluation.metrics import Matrix, accuracy_on_seen, check_matrix

# (results key, column title, format) of the metrics shown in reports.
METRICS = (
    ("average_accuracy", "avg acc", ".4f"),
    ("average_incremental_accuracy", "avg incr acc", ".4f"),
    ("forgetting", "forgetting", "+.4f"),
    ("backward_transfer", "BWT", "+.4f"),
    ("forward_transfer", "FWT", "+.4f"),
)
#: The task-incremental counterpart shown beside them.
TASK_METRIC = ("task_average_accuracy", "task-IL acc", ".4f")


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def format_matrix(matrix: Matrix) -> str:
    """The accuracy matrix as a text table (rows: after training on; columns: tested
    on); the last column is the mean on the experiences seen so far. Experiences are
    numbered from 1, as people count them (``matrix[0]`` is row 1).

    An undefined accuracy (a test experience with no samples) reads ``n/a``.

    >>> print(format_matrix([[0.9, 0.0], [0.6, 0.8]]))
    after \\ on        1       2     avg
             1    0.900   0.000   0.900
             2    0.600   0.800   0.700
    >>> print(format_matrix([[None, 0.0]]).splitlines()[1])
             1      n/a   0.000     n/a
    """
    rows = check_matrix(matrix)
    seen = accuracy_on_seen(rows)
    lines = ["after \\ on " + "".join(f"{j + 1:>8}" for j in range(len(rows[0]))) + "     avg"]
    for i, row in enumerate(rows):
        lines.append(f"{i + 1:>10} " + "".join(f"{_fmt(a, '.3f'):>8}" for a in row)
                     + f"{_fmt(seen[i], '.3f'):>8}")
    return "\n".join(lines)


def format_metrics(results: dict) -> str:
    """The derived metrics of a results dict, one per line (``n/a`` where undefined)."""
    names = {
        "average_accuracy": "final average accuracy",
        "average_incremental_accuracy": "average incremental accuracy",
        "forgetting": "forgetting",
        "backward_transfer": "backward transfer",
        "forward_transfer": "forward transfer",
        "task_average_accuracy": "task-incremental final average accuracy",
    }
    metrics = METRICS + ((TASK_METRIC,) if TASK_METRIC[0] in results else ())
    lines = [f"{names[key]}: {_fmt(results.get(key), spec)}" for key, _, spec in metrics]
    if results.get("anytime_accuracy") is not None:
        lines.append(f"anytime accuracy (every {results.get('anytime_every')} iterations): "
                     f"{results['anytime_accuracy']:.4f}")
    rows = (results.get("compute") or {}).get("forward_rows_per_sample")
    if rows is not None:
        lines.append(f"forward rows per stream sample: {rows:.2f}")
    total = (results.get("timing") or {}).get("total_s")
    if total is not None:
        lines.append(f"total time: {total:.1f} s")
    return "\n".join(lines)


def format_experience_stats(record: dict) -> str:
    """The training figures of an ``experience_end`` record in a few words.

    >>> format_experience_stats({"train_loss": 0.25, "samples_per_s": 1234.5,
    ...                          "memory": {"size": 200}})
    'train loss 0.2500, 1234 samples/s, memory 200'
    """
    return (f"train loss {_fmt(record['train_loss'], '.4f')}, "
            f"{record['samples_per_s']:.0f} samples/s, memory {record['memory']['size']}")


def method_of(config: dict) -> str:
    """The rehearsal method of a run (``naive`` without replay; ``er`` for runs saved
    before methods existed).

    >>> method_of({"replay": False}), method_of({}), method_of({"method": "der"})
    ('naive', 'er', 'der')
    """
    return "naive" if config.get("replay") is False else str(config.get("method", "er"))


def run_label(config: dict, name: Optional[str] = None) -> str:
    """A short description of a run from its configuration, e.g.
    ``split_digits, replay 200 (class, herding)``; ``name`` (the benchmark's name in
    the results, e.g. taken from its data) replaces the benchmark's registry name.

    >>> run_label({"benchmark": "split_digits", "replay": False})
    'split_digits, no replay'
    >>> run_label({"benchmark": "split_mnist", "replay": False}, "FashionMNIST")
    'FashionMNIST, no replay'
    >>> run_label({"benchmark": "split_digits", "method": "derpp", "mem_size": 200,
    ...            "method_options": {"alpha": 0.2, "beta": 1.0}})
    'split_digits, derpp (alpha 0.2, beta 1.0), memory 200'
    >>> run_label({"benchmark": "split_digits", "init": "xavier", "mem_size": 200, "policy": "reservoir"})
    'split_digits, xavier init, replay 200 (reservoir)'
    """
    from clreplay.replay.registry import POLICIES_WITH_SELECTION

    parts = [str(name or config.get("name") or config.get("benchmark", "run"))]
    augment = config.get("augment")
    if augment is None:  # the default: on for the CIFAR benchmarks
        augment = config.get("benchmark") in ("split_cifar10", "split_cifar100")
    if config.get("model", "mlp") != "mlp" or augment:
        parts.append(str(config.get("model", "mlp")) + (", augmented" if augment else ""))
    if config.get("init", "default") != "default":
        parts.append(f"{config['init']} init")
    method = method_of(config)
    if config.get("replay") is False:
        parts.append("no replay")
    elif method != "er":
        options = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in (config.get("method_options") or {}).items())
        parts.append(f"{method}{f' ({options})' if options else ''}, memory {config.get('mem_size', '?')}")
    elif "mem_size" in config:
        policy = str(config.get("policy", "?"))
        if policy in POLICIES_WITH_SELECTION and config.get("selection"):
            policy += f", {config['selection']}"
        parts.append(f"replay {config['mem_size']} ({policy})")
    return ", ".join(parts)


def benchmark_name(results: dict) -> Optional[str]:
    """The benchmark's name recorded in a results dict (None if absent)."""
    benchmark = results.get("benchmark")
    return benchmark.get("name") if isinstance(benchmark, dict) else None


def format_report(results: dict, *, source: Optional[str] = None) -> str:
    """A whole report: what ran, the accuracy matrix and the metrics."""
    head = run_label(results.get("config") or {}, benchmark_name(results))
    if source:
        head = f"{source}: {head}"
    parts = [head, format_matrix(results["accuracy_matrix"])]
    if results.get("task_accuracy_matrix"):
        parts[1] = "class-incremental accuracy:\n" + parts[1]
        parts.append("task-incremental accuracy (logits restricted to each experience's "
                     "classes):\n" + format_matrix(results["task_accuracy_matrix"]))
    return "\n\n".join(parts + [format_metrics(results)])


def format_comparison(runs: Dict[str, dict]) -> str:
    """Several runs side by side: one row per run with its metrics, memory size,
    total time and (for runs that have them) task-incremental average accuracy, anytime
    accuracy and forward rows per stream sample, then
    each run's mean accuracy on seen experiences after every step.

    >>> a = {"config": {}, "accuracy_matrix": [[1.0, 0.0], [0.5, 1.0]], "forgetting": 0.5}
    >>> print(format_comparison({"a": a}).splitlines()[2].split())
    ['a', 'n/a', 'n/a', '+0.5000', 'n/a', 'n/a', 'n/a', 'n/a', 'er']
    """
    if not isinstance(runs, dict) or not runs:
        raise ValueError(f"runs must be a non-empty dict from label to results, got {runs!r}")
    width = max(8, *(len(label) for label in runs))
    with_task = any(TASK_METRIC[0] in results for results in runs.values())
    with_anytime = any(results.get("anytime_accuracy") is not None for results in runs.values())
    with_rows = any(_rows_per_sample(results) is not None for results in runs.values())
    titles = [title for _, title, _ in METRICS] + ["memory", "time (s)"]
    titles += [TASK_METRIC[1]] if with_task else []
    titles += ["anytime acc"] if with_anytime else []
    titles += ["rows/sample"] if with_rows else []
    widths = [max(9, len(t)) for t in titles]
    header = f"{'run':<{width}}" + "".join(f" {t:>{w}}" for t, w in zip(titles, widths)) + "  method"
    lines = [header, "-" * len(header)]
    for label, results in runs.items():
        memory = (results.get("memory") or {}).get("mem_size")
        total = (results.get("timing") or {}).get("total_s")
        cells = [_fmt(results.get(key), spec) for key, _, spec in METRICS]
        cells += [_fmt(memory, "d"), _fmt(total, ".1f")]
        if with_task:
            cells.append(_fmt(results.get(TASK_METRIC[0]), TASK_METRIC[2]))
        if with_anytime:
            cells.append(_fmt(results.get("anytime_accuracy"), ".4f"))
        if with_rows:
            cells.append(_fmt(_rows_per_sample(results), ".2f"))
        lines.append(f"{label:<{width}}" + "".join(f" {c:>{w}}" for c, w in zip(cells, widths))
                     + f"  {method_of(results.get('config') or {})}")
    lines += ["", "mean accuracy on seen experiences after each experience:"]
    for label, results in runs.items():
        seen = accuracy_on_seen(results["accuracy_matrix"])
        lines.append(f"{label:<{width}} " + " ".join(_fmt(a, ".3f") for a in seen))
    if any(results.get("task_accuracy_matrix") for results in runs.values()):
        lines += ["", "the same, task-incremental:"]
        for label, results in runs.items():
            matrix = results.get("task_accuracy_matrix")
            cells = " ".join(_fmt(a, ".3f") for a in accuracy_on_seen(matrix)) if matrix else "n/a"
            lines.append(f"{label:<{width}} {cells}")
    lines += ["", "settings:"]
    lines += [f"{label:<{width}} {run_label(results.get('config') or {}, benchmark_name(results))}"
              for label, results in runs.items()]
    return "\n".join(lines)


def _rows_per_sample(results: dict):
    """The forward rows per stream sample of a run (None for runs saved before they were counted)."""
    return (results.get("compute") or {}).get("forward_rows_per_sample")


def unique_labels(names: Sequence[str], configs: Sequence[dict]) -> List[str]:
    """Labels for runs: their folder names, or their configurations' descriptions
    where folder names repeat, numbered if those repeat too.

    >>> unique_labels(["out", "out"], [{"replay": False}, {"mem_size": 50, "policy": "experience"}])
    ['run, no replay', 'run, replay 50 (experience)']
    """
    labels = list(names)
    if len(set(labels)) < len(labels):
        labels = [run_label(config) for config in configs]
    if len(set(labels)) < len(labels):
        labels = [f"{i + 1}: {label}" for i, label in enumerate(labels)]
    return labels
