"""``clreplay tune``: the command line of a hyper-parameter search (see :mod:`clreplay.tuning`)."""

from __future__ import annotations

import argparse
import dataclasses

from clreplay.strategies.registry import METHODS
from clreplay.tuning.grid import grid_points, parse_grid, read_points
from clreplay.tuning.search import METRICS, run_tune, summarise, write_outputs

DESCRIPTION = """\
Search hyper-parameters on a validation split held out of the training data (the test set
is never read): every point of --grid (all combinations of the values given) or of --points
(a list) is trained on every --seeds seed, with the run flags below as the base settings (as
`clreplay run` takes them, --preset and --config included). The seeds are paired: every
point gets the same initial weights, data order and validation split per seed. Points run
in --jobs processes of one thread each. Each finished run is appended to OUT/runs.jsonl, so
a killed tune started again with the same command runs only what is missing. At the end:
OUT/table.csv and OUT/table.md (every point, best first: mean ± std over the seeds, the
paired difference from the best with its 95% interval, time) and OUT/best.toml, the best
point as a preset (`clreplay run --config OUT/best.toml`).

Example: clreplay tune --method derpp --benchmark split_digits --epochs 1 --batch-size 10
--batch-size-mem 10 --grid lr=0.03,0.1 --grid alpha=0.1,0.3 --seeds 0 1 2 --jobs 2 --out tune/derpp
"""


def add_tune_arguments(p: argparse.ArgumentParser, add_run_arguments) -> None:
    """The tune's own flags, then every flag of ``clreplay run`` (the base settings)."""
    group = p.add_argument_group("the search")
    group.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                       help="a setting and its values (a run setting such as lr or batch_size_mem, or an "
                       "option of --method such as alpha); repeat for a grid of every combination; a list "
                       "setting takes 100x100 for [100, 100]")
    group.add_argument("--points", default=None, metavar="FILE",
                       help="instead of --grid, a list of points: a JSON list of objects or TOML [[point]] "
                       "tables, each a set of settings")
    group.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="SEED",
                       help="seeds every point runs on (paired across points)")
    group.add_argument("--holdout", type=float, default=0.1, metavar="F",
                       help="share of every class of every training experience held out as the validation set")
    group.add_argument("--split-seed", type=int, default=0, metavar="SEED",
                       help="seed of the validation split (the same split for every point and seed)")
    group.add_argument("--metric", choices=METRICS, default="average_accuracy",
                       help="what ranks the points (anytime_accuracy needs --anytime-every)")
    group.add_argument("--jobs", type=int, default=1, metavar="N", help="processes, one thread each")
    group.add_argument("--out", required=True, metavar="DIR",
                       help="folder of the tune's runs, tables and best preset (continued if it holds "
                       "this tune's runs)")
    group.add_argument("--preset-name", default=None, metavar="NAME",
                       help="the name best.toml's comments give the preset (default METHOD/BENCHMARK/MEMORY)")
    add_run_arguments(p)


def tune_command(args: argparse.Namespace) -> int:
    from clreplay.presets import resolve_config
    from clreplay.run_config import RunConfig

    fields = set(RunConfig.__dataclass_fields__)
    given = {k: v for k, v in vars(args).items() if k in fields}
    options = {name: getattr(args, name) for name in METHODS.options() if hasattr(args, name)}
    if options:
        given["method_options"] = options
    for name in ("output", "checkpoint_dir", "checkpoint_every"):
        if given.get(name) is not None:
            raise ValueError(f"--{name.replace('_', '-')} does not apply to clreplay tune (its runs write to --out)")
    if args.nproc not in (None, 1):
        raise ValueError(f"--nproc does not apply to clreplay tune (use --jobs), got --nproc {args.nproc}")
    if args.jobs < 1:
        raise ValueError(f"--jobs must be a positive int, got {args.jobs}")
    if not args.seeds or len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise ValueError(f"--seeds must be distinct non-negative ints, got {args.seeds}")
    if args.metric == "anytime_accuracy" and not given.get("anytime_every"):
        raise ValueError("--metric anytime_accuracy needs --anytime-every N")
    config = resolve_config(given, preset=args.preset, config_file=args.config)
    config.validate(names=args.flag_names)
    if bool(args.grid) == bool(args.points):
        raise ValueError("clreplay tune needs the points to try: --grid NAME=V1,V2,... (repeatable) or --points FILE")
    points = grid_points(parse_grid(args.grid, config.method)) if args.grid else read_points(args.points, config.method)
    for point in points:  # every point checked before anything runs
        from clreplay.tuning.search import config_of

        config_of(dataclasses.asdict(config), point, args.seeds[0])
    base = dataclasses.asdict(config)
    runs = run_tune(base, points, args.seeds, folder=args.out, val_fraction=args.holdout,
                    split_seed=args.split_seed, jobs=args.jobs)
    rows = summarise(runs, points, args.seeds, args.metric)
    paths = write_outputs(args.out, rows, base, args.seeds, args.metric, name=args.preset_name,
                          val_fraction=args.holdout)
    print("\n" + (args.out and open(paths[1]).read()))
    print("written: " + ", ".join(str(p) for p in paths))
    return 0
