"""The ``clreplay`` command line."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from clreplay.benchmarks.registry import list_benchmarks
from clreplay.replay.registry import list_policies, list_selections
from clreplay.run import RunConfig, run_experiment
from clreplay.strategies.registry import METHODS, all_options, list_methods

_DEFAULTS = RunConfig()


def _add_run_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="train with replay on a benchmark and report accuracies",
        description="Train an MLP on a class-incremental benchmark with a replay memory, "
        "evaluating the whole test stream after every experience.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--benchmark", default=_DEFAULTS.benchmark, choices=list_benchmarks(),
                   help="benchmark to run")
    p.add_argument("--data", default=None,
                   help="data file or folder for file-based benchmarks (split_npz, split_mnist)")
    p.add_argument("--n-experiences", type=int, default=_DEFAULTS.n_experiences,
                   help="number of experiences the classes are split into")
    p.add_argument("--epochs", type=int, default=_DEFAULTS.epochs, help="epochs per experience")
    p.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size,
                   help="training mini-batch size (current and replayed samples together)")
    p.add_argument("--lr", type=float, default=_DEFAULTS.lr, help="SGD learning rate")
    p.add_argument("--momentum", type=float, default=_DEFAULTS.momentum, help="SGD momentum")
    p.add_argument("--hidden", type=int, nargs="+", default=_DEFAULTS.hidden,
                   help="hidden layer sizes of the MLP")
    p.add_argument("--no-replay", dest="replay", action="store_false",
                   help="plain fine-tuning (Naive) without a memory, as a baseline")
    _add_method_arguments(p)
    p.add_argument("--mem-size", type=int, default=_DEFAULTS.mem_size,
                   help="replay memory size (samples)")
    p.add_argument("--policy", default=None, choices=list_policies(),
                   help="storage policy: experience (ExperienceBalancedStoragePolicy), class "
                   "(ClassBalancedStoragePolicy), reservoir (ReservoirSamplingStoragePolicy: a "
                   "uniform sample of everything seen) or parametric (ParametricStoragePolicy: "
                   "split evenly over --groupby groups); None means experience, or reservoir "
                   "with --online")
    p.add_argument("--selection", default=_DEFAULTS.selection, choices=list_selections(),
                   help="exemplar selection for the class and parametric policies: random, "
                   "herding, closest (to the class centre), entropy (EntropySelectionStrategy: "
                   "highest predictive entropy first) or margin (MarginSelectionStrategy: "
                   "smallest top-2 logit margin first)")
    p.add_argument("--groupby", default=None, choices=["class", "experience", "task"],
                   help="groups the parametric policy splits the memory evenly over "
                   "(None: one group)")
    p.add_argument("--online", action="store_true",
                   help="online replay (OnlineReplayPlugin): the memory is updated from every "
                   "mini-batch and replayed from the first experience on; use with --epochs 1 "
                   "for a single pass")
    p.add_argument("--batch-size-mem", type=int, default=None, metavar="N",
                   help="add N memory samples to every mini-batch of --batch-size current "
                   "samples (None: offline replay balances each batch over experiences; "
                   "online replay adds --batch-size)")
    p.add_argument("--task-balanced", action="store_true",
                   help="balance the memory part of each mini-batch over task labels")
    p.add_argument("--memmap-dir", default=None, metavar="DIR",
                   help="keep the memory in memory-mapped files in DIR, for memories larger "
                   "than RAM, with a bounded resident set (reservoir and parametric policies; "
                   "the same results as in RAM)")
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed,
                   help="seed of every random choice (same seed, same numbers)")
    p.add_argument("--device", default=_DEFAULTS.device, help="torch device, e.g. cpu or cuda")
    p.add_argument("--output", default=None, metavar="DIR",
                   help="folder to write results.json (and plots) into")
    p.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                   help="folder to save a checkpoint after each experience and resume from")
    p.set_defaults(handler=_run)


def _add_method_arguments(p) -> None:
    """``--method`` and one flag per method option, all read from the method registry."""
    described = "; ".join(f"{name}: {m.summary}" for name, m in METHODS.items())
    p.add_argument("--method", default=_DEFAULTS.method, choices=list_methods(),
                   help=f"rehearsal method ({described}). The --policy, --selection, --groupby, "
                   "--online and --task-balanced options are ER's; the other methods bring their "
                   "own memory")
    for name, takers in all_options().items():
        option = takers[0][1]
        defaults = ", ".join(f"{method}: {o.default}" for method, o in takers)
        # SUPPRESS: an option not given stays unset (the method's default applies) and
        # the help shows each method's default instead of "None".
        p.add_argument(option.flag, dest=name, type=option.kind, default=argparse.SUPPRESS,
                       metavar=name.upper(),
                       help=f"{option.help} (--method {' or '.join(m for m, _ in takers)}; "
                       f"default, the paper's MNIST setting: {defaults})")


def _run(args: argparse.Namespace) -> int:
    fields = RunConfig.__dataclass_fields__
    config = RunConfig(**{k: v for k, v in vars(args).items() if k in fields})
    config.method_options = {name: getattr(args, name) for name in all_options()
                             if getattr(args, name, None) is not None}
    run_experiment(config)
    return 0


def _add_report_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="print the accuracy table of a results folder and draw its plots again",
        description="Read DIR/results.json (written by `clreplay run --output DIR`), print the "
        "accuracy matrix and the metrics, and render the PNG plots again.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("dir", metavar="DIR", help="results folder (or its results.json)")
    p.add_argument("--plots-dir", default=None, metavar="DIR",
                   help="folder for the plots (default: the results folder)")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="print the table only")
    p.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from clreplay.evaluation.plots import render_plots
    from clreplay.evaluation.reports import format_report
    from clreplay.evaluation.results import read_results, results_path

    results = read_results(args.dir)
    print(format_report(results, source=str(args.dir)))
    if args.plots:
        folder = args.plots_dir or results_path(args.dir).parent
        print("\nplots: " + ", ".join(str(path) for path in render_plots(results, folder)))
    return 0


def _add_compare_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "compare",
        help="put several runs side by side in one table and one plot",
        description="Compare results folders written by `clreplay run --output DIR` (e.g. "
        "replay against --no-replay, herding against random): one table of their metrics "
        "and one plot of their accuracy on seen experiences over the stream.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("dirs", metavar="DIR", nargs="+", help="results folders (or results.json files)")
    p.add_argument("--labels", nargs="+", default=None, metavar="NAME",
                   help="one name per DIR (default: folder names, or the runs' settings "
                   "when folder names repeat)")
    p.add_argument("--plot", default="comparison.png", metavar="FILE",
                   help="where to write the comparison plot")
    p.add_argument("--no-plot", dest="draw", action="store_false", help="print the table only")
    p.set_defaults(handler=_compare)


def _compare(args: argparse.Namespace) -> int:
    from clreplay.evaluation.plots import plot_comparison
    from clreplay.evaluation.reports import format_comparison, unique_labels
    from clreplay.evaluation.results import read_results, results_path

    runs = [read_results(path) for path in args.dirs]
    if args.labels is not None:
        if len(args.labels) != len(runs):
            raise ValueError(
                f"labels must give one name per DIR ({len(runs)}), got {len(args.labels)}"
            )
        if len(set(args.labels)) != len(args.labels):
            raise ValueError(f"labels must be distinct, got {args.labels}")
        labels = list(args.labels)
    else:
        names = [results_path(path).resolve().parent.name for path in args.dirs]
        labels = unique_labels(names, [r.get("config") or {} for r in runs])
    by_label = dict(zip(labels, runs))
    print(format_comparison(by_label))
    if args.draw:
        path = plot_comparison({k: r["accuracy_matrix"] for k, r in by_label.items()}, args.plot)
        print(f"\nplot: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clreplay", description="Continual learning by rehearsal (replay) on PyTorch."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    _add_run_parser(subparsers)
    _add_report_parser(subparsers)
    _add_compare_parser(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"clreplay: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
