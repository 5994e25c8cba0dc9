"""The ``clreplay`` command line."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from clreplay.benchmarks.registry import list_benchmarks
from clreplay.replay.registry import list_policies, list_selections
from clreplay.run import RunConfig, run_experiment

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
    p.add_argument("--mem-size", type=int, default=_DEFAULTS.mem_size,
                   help="replay memory size (samples)")
    p.add_argument("--policy", default=_DEFAULTS.policy, choices=list_policies(),
                   help="storage policy: balance the memory over experiences or classes")
    p.add_argument("--selection", default=_DEFAULTS.selection, choices=list_selections(),
                   help="exemplar selection for the class-balanced policy")
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed,
                   help="seed of every random choice (same seed, same numbers)")
    p.add_argument("--device", default=_DEFAULTS.device, help="torch device, e.g. cpu or cuda")
    p.add_argument("--output", default=None, metavar="DIR",
                   help="folder to write results.json (and plots) into")
    p.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                   help="folder to save a checkpoint after each experience and resume from")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    fields = RunConfig.__dataclass_fields__
    config = RunConfig(**{k: v for k, v in vars(args).items() if k in fields})
    run_experiment(config)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clreplay", description="Continual learning by rehearsal (replay) on PyTorch."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    _add_run_parser(subparsers)
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
