"""Helpers for the tests that start, kill and watch processes (Linux /proc)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional

SRC = str(Path(__file__).resolve().parent.parent / "src")


def env_with(tmp: Path, **extra: str) -> Dict[str, str]:
    """This environment with this checkout's clreplay first, one torch thread, and a
    private temporary folder ``tmp`` (to check that a run leaves nothing in it)."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # not a worker of some launcher
    return env


def clreplay(args: List[str], env: Dict[str, str], **kwargs) -> subprocess.Popen:
    """``python -m clreplay ARGS`` started in the background, its output piped."""
    return subprocess.Popen([sys.executable, "-m", "clreplay", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat(pid: int) -> Optional[List[str]]:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # after "pid (name) "


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead and not yet reaped, does not)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def descendants(pid: int) -> List[int]:
    """Every live process below ``pid``."""
    parents: Dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and fields[0] != "Z":
                parents[int(entry)] = int(fields[1])
    out, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        out += children
        frontier = children
    return out


def spawned_workers(pid: int) -> List[int]:
    """The processes torch's spawn started below ``pid`` (the launch's ranks), oldest first."""
    workers = []
    for child in descendants(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            workers.append(child)
    return sorted(workers)


def wait_for(condition: Callable[[], bool], timeout: float, what: str, *,
              process: Optional[subprocess.Popen] = None) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` s (or if ``process`` ended)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the process ended ({process.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def gone(pids: Iterable[int], timeout: float = 15.0) -> List[int]:
    """The processes of ``pids`` still alive after waiting up to ``timeout`` s for them to end."""
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def events(folder: Path) -> List[str]:
    """The events a run logged so far in ``folder/events.jsonl`` (complete lines only)."""
    import json

    path = folder / "events.jsonl"
    try:
        text = path.read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines(keepends=True):
        if line.endswith("\n"):
            try:
                out.append(json.loads(line)["event"])
            except ValueError:
                pass
    return out


def kill_all(process: subprocess.Popen) -> None:
    """End ``process`` and everything below it (a test that failed half way)."""
    for pid in descendants(process.pid) + [process.pid]:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    try:
        process.communicate(timeout=10)
    except (subprocess.TimeoutExpired, ValueError):
        pass
