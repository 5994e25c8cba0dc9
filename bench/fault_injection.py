"""Fault injection: SIGKILL `clreplay run --checkpoint-dir` at random moments, resume, compare.

For every configuration in :data:`CONFIGS` (one per storage policy, online replay and
a memory-mapped memory; add a line to test another method), this script

1. runs the configuration once without interruption (the reference);
2. runs it again into fresh folders, killing it with SIGKILL ``--kills`` times and
   starting the same command again after each kill, until it finishes. Each kill
   is drawn at random from a seeded generator: either after a random delay, or at
   the n-th call of a chosen point in the library — inside a checkpoint's
   ``torch.save`` (half the file written), just before or after the rename that
   publishes it, inside a memory-mapped memory's row write (half the rows written),
   or right after a log line; those points are reached by running the child
   through this script (``--child``), which wraps the library functions and kills
   its own process there, without any hook in the library;
3. reports, per configuration: kills, kills survived (the next start resumed
   without an error), whether the final accuracy matrix is identical to the
   reference, whether ``epochs.csv`` lists each (experience, epoch) once, and the
   files leaked: anything in the checkpoint folder but ``checkpoint.pt``, in the
   output folder but the run's own files, in the memory-mapped folder at all.

    python bench/fault_injection.py --quick          # 2 kills per configuration
    python bench/fault_injection.py --kills 6        # more kills
    python bench/fault_injection.py --only memmap online --seed 3

Not part of the test run. Exits 1 if a configuration fails (a start that errs, a
different matrix, a duplicated log row or a leaked file). The other fault classes (full
disks, SIGTERM, unreadable files, FIFOs, decompression bombs) are bench/fault_classes.py's.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's clreplay, in this process and the children

#: Small runs (5 experiences of split_digits, 3 epochs) so that each one takes seconds.
BASE = ["--epochs", "3", "--n-experiences", "5", "--hidden", "32", "--mem-size", "100", "--seed", "3"]


@dataclass
class Config:
    """One configuration to kill and resume: a name and its extra ``clreplay run`` flags.
    ``{memmap}`` in a flag is replaced by a per-run folder whose files are checked too."""

    name: str
    args: List[str] = field(default_factory=list)


#: Every storage policy, online replay and a memory-mapped memory; extend freely.
CONFIGS: List[Config] = [
    Config("experience", ["--policy", "experience"]),
    Config("class", ["--policy", "class", "--selection", "herding"]),
    Config("reservoir", ["--policy", "reservoir"]),
    Config("parametric", ["--policy", "parametric", "--groupby", "class", "--selection", "entropy"]),
    Config("online", ["--online", "--epochs", "1", "--batch-size", "10"]),
    Config("memmap", ["--policy", "reservoir", "--memmap-dir", "{memmap}"]),
]

#: Points inside the library where a child kills itself (see :func:`child`).
POINTS = ("save", "before_rename", "after_rename", "memmap_write", "log_line")


# ----------------------------------------------------------------- the child
def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def child(point: str, at: int, argv: Sequence[str]) -> int:
    """Run ``clreplay`` with ``argv``, killing this process at the ``at``-th call of ``point``."""
    import io

    import torch

    import clreplay.checkpoint.atomic as checkpoint
    import clreplay.evaluation.loggers as loggers
    import clreplay.replay.storage.memmap as memmap
    from clreplay.cli import main

    calls = {"n": 0}

    def hit() -> bool:
        calls["n"] += 1
        return calls["n"] == at

    if point == "save":
        real_save = torch.save

        def save(obj, f, *args, **kwargs):
            if not hit():
                return real_save(obj, f, *args, **kwargs)
            buffer = io.BytesIO()
            real_save(obj, buffer)
            f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            f.flush()
            _kill_self()

        checkpoint.torch.save = save
    elif point in ("before_rename", "after_rename"):
        real_replace = os.replace

        class PatchedOs:  # only the checkpoint writer's os.replace is wrapped
            def __getattr__(self, name):
                return getattr(os, name)

            @staticmethod
            def replace(src, dst):
                if point == "before_rename" and hit():
                    _kill_self()
                real_replace(src, dst)
                if point == "after_rename" and hit():
                    _kill_self()

        checkpoint.os = PatchedOs()
    elif point == "memmap_write":
        real_write = memmap.MappedFile.write_rows

        def write_rows(self, rows, values):
            if hit():
                half = len(rows) // 2
                real_write(self, rows[:half], values[:half])
                _kill_self()
            real_write(self, rows, values)

        memmap.MappedFile.write_rows = write_rows
    elif point == "log_line":
        real_log = loggers.JSONLinesLogger.log

        def log(self, event, record):
            real_log(self, event, record)
            if hit():
                self._stream.flush()
                _kill_self()

        loggers.JSONLinesLogger.log = log
    return main(list(argv))


# ---------------------------------------------------------------- the parent
def _command(config: Config, folder: Path, point: Optional[str] = None, at: int = 0) -> List[str]:
    args = [a.replace("{memmap}", str(folder / "mm")) for a in BASE + config.args]
    args += ["--output", str(folder / "out"), "--checkpoint-dir", str(folder / "ck")]
    if point is None:
        return [sys.executable, "-m", "clreplay", "run", *args]
    return [sys.executable, str(Path(__file__).resolve()), "--child", point, str(at), "--", "run", *args]


def _env() -> Dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _matrix(folder: Path):
    return json.loads((folder / "out" / "results.json").read_text())["accuracy_matrix"]


def _leaks(folder: Path) -> List[str]:
    from clreplay.workspace import RUN_FILES

    leaked = []
    for path in sorted((folder / "ck").iterdir()) if (folder / "ck").exists() else []:
        if path.name != "checkpoint.pt":
            leaked.append(str(path.relative_to(folder)))
    for path in sorted((folder / "out").iterdir()) if (folder / "out").exists() else []:
        if path.name not in RUN_FILES:
            leaked.append(str(path.relative_to(folder)))
    if (folder / "mm").exists():
        leaked += [str(p.relative_to(folder)) for p in sorted((folder / "mm").iterdir())]
    return leaked


def _duplicate_epochs(folder: Path) -> int:
    rows = [(r["experience"], r["epoch"]) for r in csv.DictReader((folder / "out" / "epochs.csv").open())]
    return len(rows) - len(set(rows))


def run_config(config: Config, work: Path, kills: int, rng: random.Random, timeout: float) -> dict:
    env = _env()
    ref = work / config.name / "ref"
    ref.mkdir(parents=True)
    t0 = time.monotonic()
    done = subprocess.run(_command(config, ref), capture_output=True, text=True, env=env, timeout=timeout)
    duration = time.monotonic() - t0
    if done.returncode != 0:
        return {"config": config.name, "error": f"reference run failed: {done.stderr.strip()[-300:]}"}
    points_here = [p for p in POINTS if p != "memmap_write" or "{memmap}" in " ".join(config.args)]
    totals = {"kills": 0, "survived": 0, "rounds": 0, "identical": 0, "duplicate_epoch_rows": 0}
    leaked, errors, points = [], [], []
    # Rounds of kill-and-resume in fresh folders until the wanted number of kills landed
    # (a kill drawn too late in a round finds the run already finished).
    while totals["kills"] < kills and totals["rounds"] < 3 * kills:
        folder = work / config.name / f"round{totals['rounds']}"
        folder.mkdir(parents=True)
        totals["rounds"] += 1
        killed, failed = 0, False
        for _ in range(kills + 10):
            point, at, delay = None, 0, None
            if totals["kills"] + killed < kills:
                # Half the kills at a point inside the library, half after a random delay.
                if rng.random() < 0.5:
                    # Row writes of a mapped memory weigh as much as the other points together.
                    weights = [len(points_here) - 1 if p == "memmap_write" else 1 for p in points_here]
                    point = rng.choices(points_here, weights)[0]
                    # Calls per run: ~5 saves and mapped-memory updates, ~60 JSON log lines.
                    at = rng.randint(1, {"log_line": 40}.get(point, 3))
                else:
                    delay = rng.uniform(0.5, duration * 0.6)
            process = subprocess.Popen(_command(config, folder, point, at), stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, env=env)
            try:
                _, stderr = process.communicate(timeout=delay or timeout)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                _, stderr = process.communicate()
            if process.returncode == -signal.SIGKILL:
                killed += 1
                points.append(f"{point}#{at}" if point else f"after {delay:.1f}s")
                continue
            if process.returncode != 0:
                errors.append(stderr.strip()[-300:])
                failed = True
            break  # finished (or failed): the round is over
        finished = (folder / "out" / "results.json").exists()
        totals["kills"] += killed
        # A kill is survived when the next start of the same command went on without error.
        totals["survived"] += killed if finished and not failed else max(0, killed - 1)
        totals["identical"] += int(finished and _matrix(folder) == _matrix(ref))
        totals["duplicate_epoch_rows"] += _duplicate_epochs(folder) if finished else 0
        leaked += _leaks(folder)
        if failed:
            break
    return {
        "config": config.name,
        **totals,
        "leaked": leaked,
        "points": points,
        "errors": errors,
        "seconds_per_run": round(duration, 1),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return child(argv[1], int(argv[2]), argv[4:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 kills per configuration")
    parser.add_argument("--kills", type=int, default=5, help="kills per configuration")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill schedule")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME",
                        help=f"configurations to run, among {[c.name for c in CONFIGS]}")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per start")
    args = parser.parse_args(argv)
    kills = 2 if args.quick else args.kills
    configs = [c for c in CONFIGS if args.only is None or c.name in args.only]
    work = Path(tempfile.mkdtemp(prefix="clreplay-faults-"))
    rng = random.Random(args.seed)
    reports = []
    try:
        for config in configs:
            report = run_config(config, work, kills, rng, args.timeout)
            reports.append(report)
            print(json.dumps(report), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'config':<12} {'kills':>5} {'survived':>8} {'identical':>9} {'dup rows':>8} {'leaked':>6}"
          "   (identical: resumed rounds whose matrix equals the uninterrupted run's)")
    failed = False
    for r in reports:
        if "error" in r:
            print(f"{r['config']:<12} {r['error']}")
            failed = True
            continue
        ok = (r["identical"] == r["rounds"] and not r["leaked"] and not r["errors"]
              and r["duplicate_epoch_rows"] == 0)
        failed |= not ok
        print(f"{r['config']:<12} {r['kills']:>5} {r['survived']:>8} {r['identical']:>4}/{r['rounds']:<4} "
              f"{r['duplicate_epoch_rows']!s:>8} {len(r['leaked']):>6}"
              + ("" if ok else f"   FAILED {r['leaked'] or r['errors']}"))
    total = sum(r.get("kills", 0) for r in reports)
    print(f"\n{total} kills, {sum(r.get('survived', 0) for r in reports)} survived, "
          f"{sum(r.get('identical', 0) for r in reports)}/{sum(r.get('rounds', 0) for r in reports)} "
          "resumed matrices identical, "
          f"{sum(len(r.get('leaked', [])) for r in reports)} files leaked (seed {args.seed})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
