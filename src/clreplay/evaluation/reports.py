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


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def format_matrix(matrix: Matrix) -> str:
    """The accuracy matrix as a text table (rows: after training on; columns: tested
    on); the last column is the mean on the experiences seen so far.

    >>> print(format_matrix([[0.9, 0.0], [0.6, 0.8]]))
    after \\ on        0       1     avg
             0    0.900   0.000   0.900
             1    0.600   0.800   0.700
    """
    rows = check_matrix(matrix)
    seen = accuracy_on_seen(rows)
    lines = ["after \\ on " + "".join(f"{j:>8}" for j in range(len(rows[0]))) + "     avg"]
    for i, row in enumerate(rows):
        lines.append(f"{i:>10} " + "".join(f"{a:8.3f}" for a in row) + f"{seen[i]:8.3f}")
    return "\n".join(lines)


def format_metrics(results: dict) -> str:
    """The derived metrics of a results dict, one per line (``n/a`` where undefined)."""
    names = {
        "average_accuracy": "final average accuracy",
        "average_incremental_accuracy": "average incremental accuracy",
        "forgetting": "forgetting",
        "backward_transfer": "backward transfer",
        "forward_transfer": "forward transfer",
    }
    lines = [f"{names[key]}: {_fmt(results.get(key), spec)}" for key, _, spec in METRICS]
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


def run_label(config: dict) -> str:
    """A short description of a run from its configuration, e.g.
    ``split_digits, replay 200 (class, herding)``.

    >>> run_label({"benchmark": "split_digits", "replay": False})
    'split_digits, no replay'
    >>> run_label({"benchmark": "split_digits", "method": "derpp", "mem_size": 200,
    ...            "method_options": {"alpha": 0.2, "beta": 1.0}})
    'split_digits, derpp (alpha 0.2, beta 1.0), memory 200'
    """
    from clreplay.replay.registry import POLICIES_WITH_SELECTION

    parts = [str(config.get("benchmark", "run"))]
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


def format_report(results: dict, *, source: Optional[str] = None) -> str:
    """A whole report: what ran, the accuracy matrix and the metrics."""
    head = run_label(results.get("config") or {})
    if source:
        head = f"{source}: {head}"
    return "\n\n".join([head, format_matrix(results["accuracy_matrix"]), format_metrics(results)])


def format_comparison(runs: Dict[str, dict]) -> str:
    """Several runs side by side: one row per run with its metrics, memory size and
    total time, then each run's mean accuracy on seen experiences after every step.

    >>> a = {"config": {}, "accuracy_matrix": [[1.0, 0.0], [0.5, 1.0]], "forgetting": 0.5}
    >>> print(format_comparison({"a": a}).splitlines()[2].split())
    ['a', 'n/a', 'n/a', '+0.5000', 'n/a', 'n/a', 'n/a', 'n/a', 'er']
    """
    if not isinstance(runs, dict) or not runs:
        raise ValueError(f"runs must be a non-empty dict from label to results, got {runs!r}")
    width = max(8, *(len(label) for label in runs))
    titles = [title for _, title, _ in METRICS] + ["memory", "time (s)"]
    widths = [max(9, len(t)) for t in titles]
    header = f"{'run':<{width}}" + "".join(f" {t:>{w}}" for t, w in zip(titles, widths)) + "  method"
    lines = [header, "-" * len(header)]
    for label, results in runs.items():
        memory = (results.get("memory") or {}).get("mem_size")
        total = (results.get("timing") or {}).get("total_s")
        cells = [_fmt(results.get(key), spec) for key, _, spec in METRICS]
        cells += [_fmt(memory, "d"), _fmt(total, ".1f")]
        lines.append(f"{label:<{width}}" + "".join(f" {c:>{w}}" for c, w in zip(cells, widths))
                     + f"  {method_of(results.get('config') or {})}")
    lines += ["", "mean accuracy on seen experiences after each experience:"]
    for label, results in runs.items():
        seen = accuracy_on_seen(results["accuracy_matrix"])
        lines.append(f"{label:<{width}} " + " ".join(f"{a:.3f}" for a in seen))
    lines += ["", "settings:"]
    lines += [f"{label:<{width}} {run_label(results.get('config') or {})}"
              for label, results in runs.items()]
    return "\n".join(lines)


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
