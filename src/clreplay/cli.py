"""The ``clreplay`` command line."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from typing import Callable, List, Optional, Sequence

from clreplay import __version__
from clreplay import distributed as idist
from clreplay._validation import check_choice
from clreplay.benchmarks.registry import BENCHMARKS
from clreplay.cli_help import DEFAULTS as _DEFAULTS
from clreplay.cli_help import described, help_context
from clreplay.launch import LaunchError, end_with_parent
from clreplay.locking import FolderLockedError
from clreplay.models.registry import MODELS
from clreplay.options import Option
from clreplay.replay.registry import POLICIES
from clreplay.run import RunConfig, launch_experiment, run_experiment
from clreplay.run_config import RUN_OPTIONS
from clreplay.signals import sigterm_interrupts
from clreplay.strategies.registry import METHODS
from clreplay.training.guards import NonFiniteLossError
from clreplay.write_failures import RunWriteError

_RUN_FIELDS = set(RunConfig.__dataclass_fields__)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" only where it informs: not for on/off flags (``--no-replay``
    would read "default: True") nor for options whose help already says what None
    means. A run option's parser default is SUPPRESS (only the flags given override a
    preset): its default is ``defaults``'s, the run's settings before any flag (RunConfig's,
    or those of the ``--benchmark``/``--preset`` given with ``--help``)."""

    defaults: RunConfig = _DEFAULTS

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if default is argparse.SUPPRESS and action.dest in _RUN_FIELDS:
            default = getattr(self.defaults, action.dest)
        elif default is argparse.SUPPRESS and action.dest in self.defaults.method_options:
            default = self.defaults.method_options[action.dest]
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
    p = subparsers.add_parser(name, help=help, description=description, epilog=_EPILOGS.get(name),
                              usage=_USAGES.get(name), formatter_class=_HelpFormatter)
    p.set_defaults(handler=handler)
    return p


#: What a subcommand's help ends with.
_EPILOGS = {"run": "`clreplay run --method NAME --help` lists the options of method NAME; "
                   "`--benchmark NAME --help` and `--preset NAME --help` show their defaults; "
                   "`--policy NAME`, `--selection NAME` or `--model NAME` with --help describes NAME."}
#: Usage lines shorter than argparse's list of every flag.
_USAGES = {"run": "%(prog)s [-h] [--benchmark NAME] [--method NAME] [OPTION ...]"}
#: How the command line shows a few options' values (metavars).
_METAVARS = {"benchmark": "NAME", "data": "PATH", "output": "DIR", "checkpoint_dir": "DIR", "memmap_dir": "DIR",
             "batch_size_mem": "N", "checkpoint_every": "N", "world_size": "N",
             "n_experiences": "N", "epochs": "N", "batch_size": "N", "mem_size": "N",
             "seed": "N", "width": "N", "hidden": "N",
             "anytime_every": "N", "class_order": "ORDER"}
#: The run's flags in groups, in the order ``--help`` shows them (by RunConfig field).
_GROUPS = (
    ("data", ("benchmark", "data", "name", "n_experiences", "class_order", "blurry")),
    ("model and training", ("model", "hidden", "width", "init", "augment", "epochs", "batch_size",
                            "lr", "momentum", "seed", "device")),
    ("replay", ("replay", "method", "mem_size", "policy", "selection", "groupby", "online",
                "batch_size_mem", "task_balanced", "memmap_dir")),
    ("output, checkpoints and processes", ("output", "overwrite", "anytime_every", "checkpoint_dir",
                                           "checkpoint_every", "world_size")),
    ("speed (how the steps compute, not what)", ("precision", "compile", "channels_last", "threads")),
)


def _add_option(p, option: Option, *, help_text: Optional[str] = None) -> None:
    """One flag from an option record: its kind (a bool is ``--x/--no-x``), its choices (an
    unknown one suggests the close ones), a list for ``many``; checked in full by the record.
    The parser's default is SUPPRESS: only the flags given override a preset and a config
    file, whose values override the record's default."""
    kwargs: dict = {"dest": option.name, "default": argparse.SUPPRESS,
                    "help": option.help if help_text is None else help_text}
    if option.kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        kwargs["type"] = _choice(option.flag, option.choices) if option.choices else option.kind
        kwargs["metavar"] = _METAVARS.get(option.name) or (
            _metavar(option.choices) if option.choices else option.name.upper())
        if option.many:
            kwargs["nargs"] = "+"
    p.add_argument(option.flag, **kwargs)


def _add_run_arguments(p: argparse.ArgumentParser, *, defaults: RunConfig = _DEFAULTS) -> None:
    """Every flag of ``clreplay run``, from the option records (the run's own,
    :data:`~clreplay.run_config.RUN_OPTIONS`, and the models' and policies'), in groups.
    ``defaults`` are the settings the help describes: the model, policy, selection and
    method in effect get their summary, and the method's options are listed for that
    method only (the others still parse, and are refused with any other method)."""
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="start from a shipped preset's settings (`clreplay presets`)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="start from your own TOML file of settings (over --preset)")
    records = {option.name: (option, described(option, defaults)) for option in RUN_OPTIONS}
    for registry, flag in ((BENCHMARKS, "--benchmark"), (MODELS, "--model"), (POLICIES, "--policy")):
        for takers in registry.options().values():
            option = takers[0][1]
            owners = [owner for owner, _ in takers]
            where = f"{flag} {' or '.join(owners)}"
            if registry is BENCHMARKS and all(owner.startswith("split_") for owner in owners):
                where = "the split_* benchmarks"
            records.setdefault(option.name, (option, f"{option.help} ({where})"))
    grouped = [name for _, names in _GROUPS for name in names]
    # A setting no group names yet still gets its flag, in the last group.
    groups = _GROUPS[:-1] + ((_GROUPS[-1][0], _GROUPS[-1][1] + tuple(
        name for name in records if name not in grouped)),)
    for title, names in groups:
        group = p.add_argument_group(title)
        for name in names:
            option, text = records[name]
            if name == "world_size":  # --nproc starts the processes: not a setting to override
                group.add_argument("--nproc", type=int, default=None, metavar="N", dest="nproc",
                                   help=f"{text}, started here; leave it out under torchrun")
            else:
                _add_option(group, option, help_text=text)
    _add_method_options(p, defaults.method)


def _add_method_options(p: argparse.ArgumentParser, method: str) -> None:
    """The methods' own flags: ``method``'s in the help, with its defaults; the others hidden."""
    shown = {option.name for option in METHODS[method].options} if method in METHODS else set()
    group = p.add_argument_group(f"options of --method {method}", METHODS[method].summary) if shown \
        else p.add_argument_group("method options")
    for takers in METHODS.options().values():
        option = takers[0][1]
        if option.name in shown:
            _add_option(group, METHODS[method].option(option.name))
        else:
            _add_option(group, option, help_text=argparse.SUPPRESS)


def flag_names(parser: argparse.ArgumentParser) -> dict:
    """RunConfig field -> the flag that sets it (``mem_size`` -> ``--mem-size``)."""
    fields = RunConfig.__dataclass_fields__
    names = {action.dest: action.option_strings[0] for action in parser._actions
             if action.dest in fields and action.option_strings}
    return {**names, "world_size": "--nproc", "replay": "--no-replay"}


#: Settings that mean something only with a replay memory (``method``: another than er).
_REPLAY_SETTINGS = ("method", "mem_size", "policy", "selection", "groupby", "online",
                    "batch_size_mem", "task_balanced", "memmap_dir")


def _refuse_typed_replay_options(given: dict) -> None:
    """``--no-replay`` with a replay option typed beside it is refused naming that flag,
    whatever the option (``--mem-size`` as ``--batch-size-mem``); an on/off option typed
    off (``--no-online``) agrees with it. Values a preset or a config file brings are not
    the user's typing: the run configuration's own checks speak of those."""
    if given.get("replay", True) is not False:
        return
    typed = [(name, given[name]) for name in _REPLAY_SETTINGS if name in given]
    typed += list(given.get("method_options", {}).items())
    for name, value in typed:
        # Off, or the run's own default (ER's method, policy, memory): typed to unset a
        # preset's value, which agrees with --no-replay.
        if value is False or value == getattr(_DEFAULTS, name, None):
            continue
        flag = "--" + name.replace("_", "-")
        setting = flag if value is True else f"{flag} {value!r}"
        raise ValueError(f"{flag} needs replay, got {setting} with --no-replay (no memory to fill)")


def _run(args: argparse.Namespace) -> int:
    try:
        return _run_settings(args)
    except (ValueError, TypeError) as err:  # a setting the user did not type: say whence it came
        raise _explained(err, args) from None


def _explained(err: Exception, args: argparse.Namespace) -> Exception:
    from clreplay.presets.origins import explain_origins, setting_origins

    given = {k: v for k, v in vars(args).items() if k in _RUN_FIELDS}
    try:
        origins = setting_origins(given, preset=args.preset, config_file=args.config)
    except (ValueError, TypeError, OSError):  # the preset or file is what is wrong
        return err
    options = {s for action in args.run_parser._actions for s in action.option_strings}
    return explain_origins(err, origins, args.flag_names, options)


def _run_settings(args: argparse.Namespace) -> int:
    from clreplay.presets import resolve_config

    given = {k: v for k, v in vars(args).items() if k in _RUN_FIELDS}
    options = {name: getattr(args, name) for name in METHODS.options() if hasattr(args, name)}
    if options:  # over the preset's or file's method options, like any flag
        given["method_options"] = options
    _refuse_typed_replay_options(given)
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
        end_with_parent()  # torchrun's agent killed: no rank trains on as an orphan
        idist.init_from_env(device=config.device)
        try:
            with sigterm_interrupts():
                run_experiment(config, names=args.flag_names)
        finally:
            idist.teardown()
    elif nproc is not None and nproc > 1:
        launch_experiment(config, nproc, names=args.flag_names)
    else:
        with sigterm_interrupts():  # a cluster's SIGTERM unwinds like Ctrl-C (exit 143)
            run_experiment(config, names=args.flag_names)  # every setting checked before any data is read
    return 0


def _add_presets_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--show", default=None, metavar="NAME",
                   help="print this preset's file (a benchmark's name: the settings it brings)")


def _presets(args: argparse.Namespace) -> int:
    from clreplay.benchmarks.registry import list_benchmarks
    from clreplay.presets import describe_presets, list_presets, load_preset, preset_text

    if args.show is not None:
        if args.show in list_benchmarks() and args.show not in list_presets():
            print(f"# --benchmark {args.show} brings no settings of its own: the run's defaults "
                  f"apply (`clreplay run --benchmark {args.show} --help` shows them)")
            return 0
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


def build_parser(argv: Optional[Sequence[str]] = None) -> argparse.ArgumentParser:
    """The ``clreplay`` parser. Given the command line, ``clreplay run --help`` shows the
    defaults of the ``--benchmark``/``--preset`` typed with it and ``--method``'s options."""
    defaults, context = help_context(argv or [])
    parser = argparse.ArgumentParser(
        prog="clreplay", description="Continual learning by rehearsal (replay) on PyTorch."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in ("run", "tune", "report", "compare", "presets"):
        add_arguments, handler, help_text, description = _SUBCOMMANDS[name]
        p = _subcommand(subparsers, name, handler, help=help_text,
                        description=description or _tune().DESCRIPTION)
        if name == "run":
            p.formatter_class = type("_RunHelpFormatter", (_HelpFormatter,), {"defaults": defaults})
            if context is not None:
                p.description += f" The defaults shown are those of {context}."
            add_arguments(p, defaults=defaults)
        else:
            add_arguments(p)
    for name in ("run", "tune"):
        sub = subparsers.choices[name]
        sub.set_defaults(flag_names=flag_names(sub), run_parser=sub)
    parser.subcommands = dict(subparsers.choices)
    return parser


def _unknown_arguments(parser: argparse.ArgumentParser, command: str, unknown: List[str]) -> None:
    """Options the subcommand does not know: its own usage and prefix, and the close flag."""
    sub = parser.subcommands[command]
    hint = ""
    if unknown[0].startswith("--"):
        flags = [f for action in sub._actions for f in action.option_strings]
        close = difflib.get_close_matches(unknown[0].split("=")[0], flags, n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else ""
    sub.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")


def _closed_pipe() -> int:
    """stdout's reader went away (``clreplay report DIR | head -1``): end quietly, as
    ``yes | head -1`` does (status 141: 128 + SIGPIPE), with nothing left to flush at exit."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # a stdout without a file descriptor
        pass
    return 141


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        try:
            return _main(argv)
        finally:  # a reader gone away shows here, not in the interpreter's last flush
            sys.stdout.flush()
    except BrokenPipeError:
        return _closed_pipe()


def _main(argv: List[str]) -> int:
    parser = build_parser(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _unknown_arguments(parser, args.command, unknown)
    prefix = f"clreplay {args.command}"  # every message of a subcommand starts alike
    try:
        return args.handler(args)
    except (ValueError, TypeError, FileNotFoundError, PermissionError, FolderLockedError) as err:
        # Bad input of any kind (CheckpointError is a ValueError): one line, usage's status.
        print(f"{prefix}: error: {err}", file=sys.stderr)
        return 2
    except (NonFiniteLossError, RunWriteError) as err:  # the run failed: 1
        print(f"{prefix}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:  # Ctrl-C (130) or SIGTERM (143)
        print(f"{prefix}: {getattr(err, 'message', 'interrupted')}", file=sys.stderr)
        return getattr(err, "exit_status", 130)
    except LaunchError as err:
        print(f"{prefix}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
