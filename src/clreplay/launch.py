"""Starting N local processes on torch's elastic agent (what ``torchrun`` runs), never by fork.

:func:`launch` runs ``fn(*args)`` in ``nproc`` processes joined in one process group,
with the agent of ``torch.distributed.launcher.api.elastic_launch``: a c10d
rendezvous on a free port of 127.0.0.1, workers started by ``spawn`` (a fresh
interpreter each, so it works from a process that already trained, in a notebook
or on a CUDA build), monitored, and stopped together when one of them fails. It
returns every rank's return value, in rank order.

When the run does not end well, it says what happened, naming the rank:

* a rank that raised: :class:`LaunchError` with its exception and traceback (the
  earliest of the ranks' errors; the errors of the ranks that only lost their
  peers in a collective are consequences, and so are the ranks the agent stopped);
* a rank that died without raising (SIGKILL, a crash): :class:`LaunchError` naming
  the rank and the signal or exit code;
* Ctrl-C (SIGINT to the process group), or SIGINT/SIGTERM/SIGHUP to the launcher:
  :class:`LaunchInterrupted`, a ``KeyboardInterrupt`` carrying rank 0's own message
  (the main job's says what its checkpoint holds and how to resume). A worker starts
  with SIGINT held back until it can stop in order, so a Ctrl-C while it imports torch
  prints no traceback.

Nothing is left behind: every file of the launch (the agent's error files, the
ranks' failure records, the ``pytorch-errorfile-*`` files of torch's spawn) lives in
one temporary folder that is removed when the launch ends; a small janitor
process removes it if the launcher itself is killed (SIGKILL), and the workers end
with their launcher (torch's spawn gives them a parent-death signal).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import gc
import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from datetime import timedelta
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from clreplay import distributed as idist
from clreplay._validation import check_int, check_positive_int

#: Signals the agent turns into an orderly stop of the workers (and of the launch).
_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")
#: Seconds the agent waits for stopped workers to exit before it kills them.
SHUTDOWN_TIMEOUT = 10
#: Removes the launch folder once its launcher is gone, however it went (EOF on stdin).
_JANITOR = "import shutil, sys\nsys.stdin.buffer.read()\nshutil.rmtree(sys.argv[1], ignore_errors=True)\n"
#: Words of the errors a rank gets when a peer is gone (gloo, nccl, the store).
_PEER_GONE = ("connection closed", "connection reset", "broken pipe", "connection refused",
              "socket timeout", "timed out", "nccl", "gloo", "peer")


class LaunchError(RuntimeError):
    """A process started by :func:`launch` failed. ``rank`` names it (None if unknown),
    ``summary`` says how, ``traceback`` is its traceback if it raised (the message ends
    with it) and ``exception`` the exception itself (a caller may re-raise an error of
    bad input as one process would).

    >>> str(LaunchError("rank 1 of 2 was killed by SIGKILL", 1))
    'rank 1 of 2 was killed by SIGKILL'
    """

    def __init__(self, summary: str, rank: Optional[int] = None, traceback: Optional[str] = None,
                 exception: Optional[BaseException] = None) -> None:
        message = summary if not traceback else f"{summary}\nrank {rank}'s traceback:\n{traceback.rstrip()}"
        super().__init__(message)
        self.summary, self.rank, self.traceback = summary, rank, traceback
        #: The exception the rank raised, as it raised it (when it could be sent back).
        self.exception = exception


class LaunchInterrupted(KeyboardInterrupt):
    """The launch was interrupted (Ctrl-C, or a signal to the launcher); ``message`` is
    rank 0's own account of it when it gave one (``explained``)."""

    def __init__(self, message: str, *, explained: bool = False) -> None:
        super().__init__(message)
        self.message, self.explained = message, explained


# ------------------------------------------------------------------ the worker
class _Terminated(KeyboardInterrupt):
    """SIGTERM in a worker: unwound like Ctrl-C, so a run says what it saved."""


def _stop(signum, frame) -> None:
    """The first SIGINT or SIGTERM unwinds the run like Ctrl-C; the next ones are ignored
    (Ctrl-C reaches a worker twice: from the terminal, then forwarded by the agent)."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)
    raise KeyboardInterrupt() if signum == signal.SIGINT else _Terminated("terminated (SIGTERM)")


def _message(err: BaseException) -> Optional[str]:
    """The account a run gave of its interruption (``err.message``), also when the
    unwinding that followed raised again."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if getattr(err, "message", None):
            return err.message
        err = err.__context__
    return None


def _pickled(err: BaseException) -> Optional[str]:
    try:
        return base64.b64encode(pickle.dumps(err)).decode("ascii")
    except Exception:  # an exception that cannot travel: its text and traceback do
        return None


def _unpickled(text: Optional[str]) -> Optional[BaseException]:
    """The exception a rank recorded (written by this launch's own workers, in its private
    folder), or None if it cannot be rebuilt here."""
    if not text:
        return None
    try:
        err = pickle.loads(base64.b64decode(text))
    except Exception:
        return None
    return err if isinstance(err, BaseException) else None


def _record(folder: str, rank: int, record: dict) -> None:
    """Write the rank's record atomically: the launcher never reads half of one."""
    path = os.path.join(folder, f"rank{rank}.json")
    try:
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.replace(path + ".tmp", path)
    except OSError:  # the launch folder is gone: its launcher ended first
        pass


def _kind(err: BaseException) -> str:
    if isinstance(err, KeyboardInterrupt):
        return "interrupted"
    dist_error = getattr(torch.distributed, "DistError", ())
    text = str(err).lower()
    if isinstance(err, dist_error) or (isinstance(err, RuntimeError) and any(w in text for w in _PEER_GONE)):
        return "collective"
    return "error"


def _worker(fn: Callable, args: tuple, folder: str, device: str, threads: Optional[int],
            timeout_s: float) -> Any:
    """One rank: join the group from the agent's environment, run ``fn``, leave the group;
    record how it ended for the launcher."""
    rank = int(os.environ["RANK"])
    try:  # a record of an earlier attempt (the agent restarted the workers)
        os.remove(os.path.join(folder, f"rank{rank}.json"))
    except OSError:
        pass
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    if hasattr(signal, "pthread_sigmask"):  # a Ctrl-C held back while this process started
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        idist.init_from_env(device=device, timeout=timedelta(seconds=timeout_s))
        try:
            result = fn(*args)
        finally:
            idist.teardown()
    except BaseException as err:
        # The stop is under way: a second signal (the agent forwards the one the process
        # group got) must not cut the record or the exit short.
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, signal.SIG_IGN)
        _record(folder, rank, {"kind": _kind(err), "time": time.time(), "pid": os.getpid(),
                               "error": f"{type(err).__name__}: {err}",
                               "message": _message(err),
                               "traceback": traceback.format_exc(),
                               "exception": _pickled(err)})
        if isinstance(err, KeyboardInterrupt):
            # torch's spawn would count it a success (exit code 0); the agent must see a stop.
            raise SystemExit(130) from None
        raise
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)
    _record(folder, rank, {"kind": "done", "time": time.time(), "pid": os.getpid()})
    return result


def end_with_parent(signum: int = signal.SIGTERM) -> bool:
    """Have the kernel send this process ``signum`` when its parent dies (Linux; elsewhere
    nothing happens and False is returned): a worker of torchrun's agent, which starts
    its workers in sessions of their own, then ends with a killed agent instead of
    training on as an orphan. A parent already gone sends it at once."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, int(signum), 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() == 1:  # orphaned before the call
        os.kill(os.getpid(), signum)
    return True


# ---------------------------------------------------------------- the launcher
def launch(fn: Callable, nproc: int, *args, device: str | torch.device = "cpu",
           threads: Optional[int] = None, timeout: timedelta = idist.DEFAULT_TIMEOUT,
           max_restarts: int = 0) -> List[Any]:
    """Run ``fn(*args)`` in ``nproc`` local processes joined in one process group; return
    their return values in rank order.

    The backend follows ``device`` (gloo on the CPU; nccl on CUDA, one GPU per process:
    ``nproc`` must not exceed the GPUs). Each process gets torchrun's environment
    (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) and
    ``threads`` torch threads (None: on the CPU, the cores divided among the processes,
    at least one; on CUDA, torch's default). ``fn`` and ``args`` must be picklable
    (``fn`` a module-level function): the processes are spawned, never forked. A
    collective that waits longer than ``timeout`` for the other ranks fails.
    ``max_restarts`` lets the agent restart every process that many times after a
    failure (``fn`` then starts again: it resumes from its own checkpoints).

    Failures raise :class:`LaunchError` (naming the rank), interruptions
    :class:`LaunchInterrupted`; see the module's description.
    """
    nproc = check_positive_int("nproc", nproc)
    max_restarts = check_int("max_restarts", max_restarts, minimum=0)
    if not isinstance(timeout, timedelta) or timeout.total_seconds() <= 0:
        raise ValueError(f"timeout must be a positive datetime.timedelta, got {timeout!r}")
    device = str(device)
    on_cuda = torch.device(device).type == "cuda"
    if on_cuda and nproc > torch.cuda.device_count():
        raise ValueError(
            f"nproc must be at most the number of GPUs ({torch.cuda.device_count()}) on "
            f"device {device!r}, got {nproc}"
        )
    if threads is None and not on_cuda:
        threads = max(1, (os.cpu_count() or 1) // nproc)
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    _start_resource_tracker()
    folder = tempfile.mkdtemp(prefix="clreplay-launch-")
    janitor = subprocess.Popen([sys.executable, "-S", "-c", _JANITOR, folder], stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True, close_fds=True)
    records = os.path.join(folder, "ranks")
    os.mkdir(records)
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"clreplay-{uuid.uuid4().hex[:12]}",
        rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=max_restarts,
        monitor_interval=0.1, start_method="spawn", logs_specs=DefaultLogsSpecs(log_dir=folder),
        signals_to_handle=",".join(_SIGNALS), shutdown_timeout=SHUTDOWN_TIMEOUT,
    )
    handlers = {name: signal.getsignal(getattr(signal, name)) for name in _SIGNALS}
    saved_env = os.environ.get("TORCHELASTIC_SIGNALS_TO_HANDLE")
    saved_tempdir = tempfile.tempdir
    tempfile.tempdir = folder  # where torch's spawn leaves its error files
    outcome: BaseException
    try:
        with _quiet_agent(), _sigint_held_back_in_workers():
            results = elastic_launch(config, _worker)(fn, tuple(args), records, device, threads,
                                                      timeout.total_seconds())
        return [results[rank] for rank in range(nproc)]
    except ChildFailedError as err:
        outcome = _failure(err, _read_records(records), nproc)
    except (SignalException, KeyboardInterrupt) as err:
        outcome = _interrupted(err, _read_records(records))
    finally:
        tempfile.tempdir = saved_tempdir
        if threading.current_thread() is threading.main_thread():  # the agent installed its own
            for name, handler in handlers.items():
                signal.signal(getattr(signal, name), signal.SIG_DFL if handler is None else handler)
        if saved_env is None:
            os.environ.pop("TORCHELASTIC_SIGNALS_TO_HANDLE", None)
        else:
            os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] = saved_env
        shutil.rmtree(folder, ignore_errors=True)
        janitor.stdin.close()
        try:
            janitor.wait(timeout=5)
        except subprocess.TimeoutExpired:  # it only removes a folder already gone
            pass
    # Raised here, not inside the except clause: the agent (its queues and semaphores) is
    # released now rather than kept alive by the exception's context until the process ends.
    gc.collect()
    raise outcome


def _start_resource_tracker() -> None:
    """Start Python's resource tracker (shared by the workers) without its warning about the
    semaphores of a killed worker (tqdm's lock): it unlinks them, and the launch already
    says which rank was killed."""
    from multiprocessing import resource_tracker

    saved = list(sys.warnoptions)
    sys.warnoptions.append("ignore:resource_tracker:UserWarning")
    try:
        resource_tracker.ensure_running()
    finally:
        sys.warnoptions[:] = saved


@contextlib.contextmanager
def _sigint_held_back_in_workers():
    """Start the workers with SIGINT blocked (a blocked signal stays blocked in a spawned
    child): a Ctrl-C while a worker imports torch waits until the worker can stop in
    order (:func:`_worker` unblocks it) instead of printing the import's traceback. This
    thread blocks it meanwhile; another thread receives it for the process, and the agent's
    handler still runs here."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    done = threading.Event()
    receiver = threading.Thread(target=done.wait, name="clreplay-launch-signals", daemon=True)
    receiver.start()  # created before the block: SIGINT reaches the process through it
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        done.set()


class _quiet_agent:
    """Keep the agent's log lines (each failure, each stopped worker, the signal it got)
    off the console: the launcher reports what happened itself."""

    _PREFIXES = ("torch.distributed.elastic", "torch.distributed.launcher", "torch.multiprocessing")

    def __enter__(self):
        names = [name for name in list(logging.root.manager.loggerDict)
                 if name.startswith(self._PREFIXES)] + list(self._PREFIXES)
        self._levels = {}
        for name in names:
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.CRITICAL)
        return self

    def __exit__(self, *exc) -> None:
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)


def _read_records(folder: str) -> Dict[int, dict]:
    """Every complete record the ranks wrote (a torn or foreign file is skipped)."""
    out = {}
    try:
        names = os.listdir(folder)
    except OSError:
        return out
    for name in names:
        if not (name.startswith("rank") and name.endswith(".json")):
            continue
        try:
            with open(os.path.join(folder, name)) as f:
                record = json.load(f)
            out[int(name[len("rank"):-len(".json")])] = record
        except (OSError, ValueError):
            continue
    return out


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _reported(err) -> Tuple[Optional[int], Any]:
    """The rank and failure the agent reported first."""
    try:
        return err.get_first_failure()
    except (ValueError, IndexError, AttributeError):
        return None, None


def _failure(err, records: Dict[int, dict], nproc: int) -> LaunchError:
    """The root cause among the ranks' records and the agent's report (module description)."""
    errors = sorted((r["time"], rank) for rank, r in records.items() if r.get("kind") == "error")
    if errors:
        rank = errors[0][1]
        record = records[rank]
        return LaunchError(f"rank {rank} of {nproc} failed: {record['error']}; the other ranks were "
                           "stopped", rank, record.get("traceback"), _unpickled(record.get("exception")))
    rank, failure = _reported(err)
    silent = [r for r in range(nproc) if r not in records]
    if failure is not None and rank in silent:
        if failure.exitcode < 0:
            how = f"was killed by {_signal_name(-failure.exitcode)}"
        else:
            how = f"exited with code {failure.exitcode} without an error"
        return LaunchError(f"rank {rank} of {nproc} (pid {failure.pid}) {how}; the other ranks "
                           "were stopped", rank)
    if silent:
        rank = silent[0]
        return LaunchError(f"rank {rank} of {nproc} died without an error (killed by a signal, or "
                           "it crashed); the other ranks were stopped", rank)
    collective = sorted((r["time"], rank) for rank, r in records.items() if r.get("kind") == "collective")
    if collective:
        rank = collective[0][1]
        return LaunchError(f"rank {rank} of {nproc} lost its peers first: {records[rank]['error']}; "
                           "the other ranks were stopped", rank)
    interrupted = sorted(rank for rank, r in records.items() if r.get("kind") == "interrupted")
    if interrupted:
        return LaunchError(f"rank {interrupted[0]} of {nproc} was interrupted: "
                           f"{records[interrupted[0]]['error']}; the other ranks were stopped",
                           interrupted[0])
    return LaunchError(f"the processes failed: {err}", rank)


def _interrupted(err: BaseException, records: Dict[int, dict]) -> LaunchInterrupted:
    what = "interrupted"
    number = getattr(err, "sigval", None)
    if number is not None and number != signal.SIGINT:
        what = f"terminated ({_signal_name(number)})"
    main = records.get(0, {})
    if main.get("message"):
        return LaunchInterrupted(main["message"] if what == "interrupted" else f"{what}: {main['message']}",
                                 explained=True)
    if main.get("kind") == "done":
        return LaunchInterrupted(f"{what} while the processes were exiting (rank 0 had finished)")
    return LaunchInterrupted(f"{what}; the processes were stopped")
