"""A small benchmark harness: timing side by side, medians, RSS, one result line.

Each ``bench_*.py`` script measures one target of issue 4 and ends with a line
``BENCH-RESULT: {json}`` that ``run_all.py`` collects into a table. Nothing
here is imported by the library or by the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

# Scripts run from any directory: make ``clreplay`` importable from a source checkout.
_SRC = Path(__file__).resolve().parent.parent / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

import torch  # noqa: E402

RESULT_PREFIX = "BENCH-RESULT: "


def parse_args(description: str, argv: Sequence[str] | None = None, **extra) -> argparse.Namespace:
    """The options every benchmark takes; ``extra`` maps ``--name`` to argparse kwargs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and one repeat: checks the script runs, measures nothing")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    for name, kwargs in extra.items():
        parser.add_argument(f"--{name.replace('_', '-')}", **kwargs)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        print("(--quick: tiny sizes; the figures below only show that the script runs)")
    return args


def machine() -> str:
    """The CPU, core count and torch version, for the record."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} thread(s), Python {platform.python_version()}")


def clock() -> float:
    return time.perf_counter()


def alternate(runners: Dict[str, Callable[[], float]], repeats: int, *, warmup: int = 1
              ) -> Dict[str, List[float]]:
    """Call each runner ``warmup + repeats`` times, interleaved, keeping the last ``repeats``.

    A runner returns its own measure (e.g. samples/s). The order of the runners
    flips every round, so a slow drift of the machine (turbo, other load) hits
    all of them alike.
    """
    names = list(runners)
    results: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(warmup + repeats):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            value = runners[name]()
            if r >= warmup:
                results[name].append(value)
    return results


@contextlib.contextmanager
def no_gc():
    """Collect, then keep Python's cyclic GC off while timing (as ``timeit`` does)."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def steady_malloc(limit: int = 1 << 28) -> bool:
    """Ask glibc to keep freed memory rather than hand it back to the OS at once.

    By default glibc trims the heap top and moves its mmap threshold as blocks
    are freed, so an allocation of a few MB now and then lands on fresh pages
    and pays milliseconds of page faults, at points that depend on everything
    allocated before. Timing millisecond operations, that noise can be larger
    than the work. Returns False where this is not glibc.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_trim_threshold, limit)) and bool(libc.mallopt(m_mmap_threshold, limit))


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def rss_kib() -> Dict[str, int]:
    """Current (VmRSS) and peak (VmHWM) resident set size in KiB, from /proc/self/status."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def verdict(value: float, target: float, *, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "PASS" if ok else "MISS"


def emit(name: str, target: str, value: float, unit: str, passed: bool, **details) -> None:
    """Print the one line ``run_all.py`` collects."""
    record = {"name": name, "target": target, "value": value, "unit": unit,
              "passed": passed, "machine": machine(), **details}
    print(RESULT_PREFIX + json.dumps(record), flush=True)
