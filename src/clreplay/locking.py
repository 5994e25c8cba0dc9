"""Exclusive locks on files and folders, held by a process for as long as it needs them.

A lock is an ``fcntl.flock`` on a lock file that holds the owner's PID. The
kernel releases it when its owner exits, however it exits (SIGKILL included), so
the lock of a dead process is simply taken over by the next one; the PID in the
file only serves to name the holder in the error a second process gets. The lock
file is removed on release; a process that locked a file just removed by its
previous owner notices (the path no longer names the inode it locked) and tries
again, so two processes never both believe they hold a lock.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as folder:
...     with lock_folder(folder, what="--output"):
...         try:
...             with lock_folder(folder, what="--output"):
...                 pass
...         except FolderLockedError as err:
...             print(str(err).split(" (")[0])
--output ... is in use by another clreplay run
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator, Optional

#: The lock file a run keeps in each folder it writes (``--output``, ``--checkpoint-dir``).
LOCK_FILENAME = ".clreplay.lock"


class FolderLockedError(RuntimeError):
    """Another live process holds the lock (its PID is in the message and ``.pid``)."""

    def __init__(self, message: str, pid: Optional[int]) -> None:
        super().__init__(message)
        self.pid = pid


def _read_pid(fd: int) -> Optional[int]:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def _acquire(path: Path, *, blocking: bool, what: str) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            holder = f"PID {pid}" if pid is not None else "PID unknown: it is just starting"
            raise FolderLockedError(
                f"{what} is in use by another clreplay run ({holder}, which holds {str(path)!r}); "
                "wait for it to end, or use another folder", pid
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)  # removed by its last owner after we opened it: lock the new one


@contextlib.contextmanager
def lock_file(path: str | os.PathLike, *, blocking: bool = True, what: str = "") -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` (created, then removed on release).

    ``blocking=False`` raises :class:`FolderLockedError` at once, naming ``what`` and
    the holder's PID, when another process holds it; ``blocking=True`` waits.
    """
    path = Path(path)
    fd = _acquire(path, blocking=blocking, what=what or repr(str(path)))
    try:
        yield path
    finally:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def lock_folder(folder: str | os.PathLike, *, what: str) -> Iterator[Path]:
    """Hold ``folder`` (created if needed) for this process, through ``folder/.clreplay.lock``.

    A second process gets a :class:`FolderLockedError` naming ``what`` (e.g. the flag,
    ``--checkpoint-dir 'ck'``) and the holder's PID.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with lock_file(folder / LOCK_FILENAME, blocking=False, what=f"{what} {str(folder)!r}") as path:
        yield path
