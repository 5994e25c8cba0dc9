"""The ``clreplay`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, List, Optional

from clreplay import distributed as idist
from clreplay._validation import check_choice
from clreplay.benchmarks.registry import BENCHMARKS
from clreplay.locking import FolderLockedError
from clreplay.models.registry import MODELS
from clreplay.options import Option
from clreplay.replay.registry import POLICIES, SELECTIONS
from clreplay.run import RunConfig, launch_experiment, run_experiment
from clreplay.run_config import RUN_OPTIONS
from clreplay.strategies.registry import METHODS
from clreplay.training.guards import NonFiniteLossError

_DEFAULTS = RunConfig()
_RUN_FIELDS = set(RunConfig.__dataclass_fields__)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" only where it informs: not for on/off flags (``--no-replay``
    would read "default: True") nor for options whose help already says what None
    means. A run option's parser default is SUPPRESS (only the flags given override a
    preset): its default is RunConfig's."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if default is argparse.SUPPRESS and action.dest in _RUN_FIELDS:
            default = getattr(_DEFAULTS, action.dest)
        if action.nargs == 0 or default is None or default is argparse.SUPPRESS \
                or "default" in text:
            return text
        return text + f" (default: {default})"


def _choice(flag: str, choices) -> Callable[[str], str]:
    """An argparse ``type`` that refuses an unknown value suggesting the close ones
    (argparse's own ``choices=`` lists them without a suggestion)."""
    choices = list(choices)

    def parse(value: str) -> str:
        try:
            return check_choice(flag, value, choices)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix(f"{flag} ")) from None

    parse.__name__ = flag.lstrip("-")
    return parse


def _metavar(choices) -> str:
    return "{" + ",".join(choices) + "}"


def _subcommand(subparsers, name: str, handler, *, help: str, description: str):
    """The parser of ``clreplay NAME``, run by ``handler(args)``."""
    p = subparsers.add_parser(name, help=help, description=description,
                              formatter_class=_HelpFormatter)
    p.set_defaults(handler=handler)
    return p


#: How the command line shows a few options' values (metavars), and the components whose
#: registries describe a choice (their summaries join the flag's help).
_METAVARS = {"data": "PATH", "output": "DIR", "checkpoint_dir": "DIR", "memmap_dir": "DIR",
             "batch_size_mem": "N", "checkpoint_every": "N", "world_size": "N", "anytime_every": "N",
             "class_order": "ORDER"}
_DESCRIBED = {"policy": POLICIES, "selection": SELECTIONS, "model": MODELS, "method": METHODS}


def _add_option(p: argparse.ArgumentParser, option: Option, *, help_text: Optional[str] = None) -> None:
    """One flag from an option record: its kind (a bool is ``--x/--no-x``), its choices (an
    unknown one suggests the close ones), a list for ``many``; checked in full by the record.
    The parser's default is SUPPRESS: only the flags given override a preset and a config
    file, whose values override the record's default."""
    kwargs: dict = {"dest": option.name, "default": argparse.SUPPRESS, "help": help_text or option.help}
    if option.kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        kwargs["type"] = _choice(option.flag, option.choices) if option.choices else option.kind
        kwargs["metavar"] = _metavar(option.choices) if option.choices else \
            _METAVARS.get(option.name, option.name.upper())
        if option.many:
            kwargs["nargs"] = "+"
    p.add_argument(option.flag, **kwargs)


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Every flag of ``clreplay run``, from the option records: the run's own
    (:data:`~clreplay.run_config.RUN_OPTIONS`), then the models', policies' and methods'."""
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="start from the settings of a shipped preset (list them with "
                   "`clreplay presets`); flags given here override it")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="start from the settings of your own TOML file (RunConfig field "
                   "names as keys, as in a preset); it overrides --preset, flags override it")
    for option in RUN_OPTIONS:
        text = option.help
        if option.name in _DESCRIBED:
            text += ": " + _DESCRIBED[option.name].describe()
        if option.name == "world_size":  # --nproc starts the processes: not a setting to override
            p.add_argument("--nproc", type=int, default=None, metavar="N", dest="nproc",
                           help=f"{text}, started here (gloo on the CPU, nccl with one GPU each on "
                           "CUDA); under torchrun (torchrun --nproc-per-node N -m clreplay run ...) "
                           "leave it out")
            continue
        _add_option(p, option, help_text=text)
    for registry, flag in ((BENCHMARKS, "--benchmark"), (MODELS, "--model"), (POLICIES, "--policy"),
                           (METHODS, "--method")):
        for takers in registry.options().values():
            option = takers[0][1]
            where = f"{flag} {' or '.join(owner for owner, _ in takers)}"
            if registry is METHODS:  # each method its own default
                where += "; default " + ", ".join(f"{owner}: {o.default}" for owner, o in takers)
            _add_option(p, option, help_text=f"{option.help} ({where})")


def flag_names(parser: argparse.ArgumentParser) -> dict:
    """RunConfig field -> the flag that sets it (``mem_size`` -> ``--mem-size``)."""
    fields = RunConfig.__dataclass_fields__
    names = {action.dest: action.option_strings[0] for action in parser._actions
             if action.dest in fields and action.option_strings}
    return {**names, "world_size": "--nproc", "replay": "--no-replay"}


def _run(args: argparse.Namespace) -> int:
    from clreplay.presets import resolve_config

    given = {k: v for k, v in vars(args).items() if k in _RUN_FIELDS}
    options = {name: getattr(args, name) for name in METHODS.options() if hasattr(args, name)}
    if options:  # over the preset's or file's method options, like any flag
        given["method_options"] = options
    config = resolve_config(given, preset=args.preset, config_file=args.config)
    nproc = args.nproc
    if nproc is not None and (isinstance(nproc, bool) or nproc < 1):
        raise ValueError(f"--nproc must be a positive int, got {nproc}")
    if idist.launched_by_torchrun():
        if nproc is not None:
            raise ValueError(
                f"--nproc must be left out under torchrun, which starts the processes "
                f"(--nproc-per-node), got --nproc {nproc}"
            )
        config.world_size = int(os.environ["WORLD_SIZE"])
        config.validate(names=args.flag_names)  # before joining the group: every rank fails alike
        idist.init_from_env(device=config.device)
        try:
            run_experiment(config, names=args.flag_names)
        finally:
            idist.teardown()
    elif nproc is not None and nproc > 1:
        launch_experiment(config, nproc, names=args.flag_names)
    else:
        run_experiment(config, names=args.flag_names)  # every setting checked before any data is read
    return 0


def _add_presets_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--show", default=None, metavar="NAME", help="print this preset's file")


def _presets(args: argparse.Namespace) -> int:
    from clreplay.presets import describe_presets, load_preset, preset_text

    if args.show is not None:
        load_preset(args.show)  # an unknown name is an error listing the valid ones
        print(preset_text(args.show), end="")
        return 0
    described = describe_presets()
    width = max(len(name) for name in described)
    for name, description in described.items():
        print(f"{name:<{width}}  {description}")
    return 0


def _add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="results folder (or its results.json)")
    p.add_argument("--plots-dir", default=None, metavar="DIR",
                   help="folder for the plots (default: the results folder)")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="print the table only")


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


def _add_compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", metavar="DIR", nargs="+", help="results folders (or results.json files)")
    p.add_argument("--labels", nargs="+", default=None, metavar="NAME",
                   help="one name per DIR (default: folder names, or the runs' settings "
                   "when folder names repeat)")
    p.add_argument("--plot", default="comparison.png", metavar="FILE",
                   help="where to write the comparison plot")
    p.add_argument("--no-plot", dest="draw", action="store_false", help="print the table only")


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
        path = plot_comparison({k: r["accuracy_matrix"] for k, r in by_label.items()}, args.plot,
                               task_curves={k: r.get("task_accuracy_matrix") for k, r in by_label.items()})
        print(f"\nplot: {path}")
    return 0


#: ``clreplay NAME``: what adds its arguments, what runs it, its help and description.
_SUBCOMMANDS = {
    "run": (
        _add_run_arguments, _run,
        "train with replay on a benchmark and report accuracies",
        "Train a model (MLP, CNN or ResNet-18) on a class-incremental benchmark with a replay memory, "
        "evaluating the whole test stream after every experience.",
    ),
    "presets": (
        _add_presets_arguments, _presets,
        "list the shipped presets of run settings (published hyper-parameters)",
        "List the presets `clreplay run --preset NAME` starts from; --show NAME "
        "prints one as TOML.",
    ),
    "report": (
        _add_report_arguments, _report,
        "print the accuracy table of a results folder and draw its plots again",
        "Read DIR/results.json (written by `clreplay run --output DIR`), print the "
        "accuracy matrix and the metrics, and render the PNG plots again.",
    ),
    "compare": (
        _add_compare_arguments, _compare,
        "put several runs side by side in one table and one plot",
        "Compare results folders written by `clreplay run --output DIR` (e.g. "
        "replay against --no-replay, herding against random): one table of their metrics "
        "and one plot of their accuracy on seen experiences over the stream.",
    ),
    "tune": (
        lambda p: _tune().add_tune_arguments(p, _add_run_arguments), lambda args: _tune().tune_command(args),
        "search hyper-parameters on a validation split, in parallel, resumably; write the best as a preset",
        None,  # the tuning module's own description
    ),
}


def _tune():
    from clreplay.tuning import command

    return command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clreplay", description="Continual learning by rehearsal (replay) on PyTorch."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in ("run", "tune", "report", "compare", "presets"):
        add_arguments, handler, help_text, description = _SUBCOMMANDS[name]
        add_arguments(_subcommand(subparsers, name, handler, help=help_text,
                                  description=description or _tune().DESCRIPTION))
    for name in ("run", "tune"):
        subparsers.choices[name].set_defaults(flag_names=flag_names(subparsers.choices[name]))
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, TypeError, FileNotFoundError, FolderLockedError) as err:
        # Bad input of any kind (CheckpointError is a ValueError): one line, usage's status.
        print(f"clreplay: error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        print(f"clreplay: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        print(f"clreplay: {getattr(err, 'message', 'interrupted')}", file=sys.stderr)
        return 130
    except idist.LaunchError as err:
        print(f"clreplay: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
