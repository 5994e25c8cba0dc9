"""Run every CPU benchmark (``bench_*.py``), each in a fresh process; print a summary table.

    python bench/run_all.py            # about 8 minutes on 2 cores (bench_distributed.py: 5)
    python bench/run_all.py --quick    # seconds: checks that the scripts run

The GPU check is separate: ``python bench/gpu_check.py`` on a machine with CUDA.
Exit status 0 when every target is met (always 0 with ``--quick``).
"""

from __future__ import annotations

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


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quick = "--quick" in argv
    records, failed = [], []
    for script in SCRIPTS:
        print(f"\n=== {script} {' '.join(argv)}", flush=True)
        proc = subprocess.run([sys.executable, str(HERE / script), *argv],
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
    print("| benchmark | target | measured | met |")
    print("| --- | --- | --- | --- |")
    for r in records:
        print(f"| {r['name']} | {r['target']} | {r['value']:.2f} {r['unit']} | "
              f"{'yes' if r['passed'] else 'no'} |")
    if failed:
        print(f"\nscripts that failed to run: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0 if quick or all(r["passed"] for r in records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
