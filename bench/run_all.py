"""Run every CPU benchmark (``bench_*.py``), each in a fresh process; print a summary table.

    python bench/run_all.py            # about 8 minutes on 2 cores (bench_distributed.py: 5)
    python bench/run_all.py --quick    # about a minute: checks that the scripts run, measures nothing
    python bench/run_all.py --only bench_eval.py bench_herding.py

The GPU check is separate: ``python bench/gpu_check.py`` on a machine with CUDA.
Exit status 0 when every target is met (always 0 with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The five targets of issue 4 in order, then any other bench_*.py found beside them.
FIRST = ["bench_throughput.py", "bench_herding.py", "bench_memory_update.py",
         "bench_footprint.py", "bench_eval.py"]
SCRIPTS = FIRST + sorted(p.name for p in HERE.glob("bench_*.py") if p.name not in FIRST)
PREFIX = "BENCH-RESULT: "


def summary(records, *, quick: bool) -> str:
    """The summary table; under ``--quick`` the sizes measure nothing, and it says so.

    >>> print(summary([{"name": "eval", "target": ">= 0.9", "value": 0.5, "unit": "x",
    ...                 "passed": False}], quick=True).splitlines()[-1])
    | eval | >= 0.9 | 0.50 x | not measured (quick) |
    """
    lines = ["| benchmark | target | measured | met |", "| --- | --- | --- | --- |"]
    for r in records:
        met = "not measured (quick)" if quick else "yes" if r["passed"] else "no"
        lines.append(f"| {r['name']} | {r['target']} | {r['value']:.2f} {r['unit']} | {met} |")
    return "\n".join(lines)


def parse_args(argv):
    """run_all's own options; any other argument is passed to every script."""
    parser = argparse.ArgumentParser(
        description="Run every CPU benchmark (bench_*.py), each in a fresh process, and print a "
        "summary of their targets. Arguments not listed here are passed to every script "
        "(`python bench/bench_throughput.py --help` lists a script's own).",
    )
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes: checks that the scripts run, measures nothing")
    parser.add_argument("--only", nargs="+", metavar="SCRIPT", choices=SCRIPTS, default=None,
                        help="run these scripts only")
    return parser.parse_known_args(argv)


def main(argv=None) -> int:
    args, passed = parse_args(sys.argv[1:] if argv is None else list(argv))
    passed = (["--quick"] if args.quick else []) + passed
    records, failed = [], []
    for script in args.only or SCRIPTS:
        print(f"\n=== {script} {' '.join(passed)}", flush=True)
        proc = subprocess.run([sys.executable, str(HERE / script), *passed],
                              capture_output=True, text=True, cwd=HERE)
        for line in proc.stdout.splitlines():
            if line.startswith(PREFIX):
                records.append(json.loads(line[len(PREFIX):]))
            else:
                print(line)
        if proc.returncode not in (0, 1):  # 1 means a target was missed; anything else broke
            print(proc.stderr, file=sys.stderr)
            failed.append(script)
    machine = records[0]["machine"] if records else "?"
    print(f"\n## Summary ({machine})\n")
    print(summary(records, quick=args.quick))
    if failed:
        print(f"\nscripts that failed to run: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0 if args.quick or all(r["passed"] for r in records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
