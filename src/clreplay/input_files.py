"""Opening the files a user names (data, ``--config``, checkpoints): regular files only.

Reading a FIFO blocks until something writes into it (forever, for a stray pipe),
and a character device such as ``/dev/zero`` never ends: either would hang a run
or fill its memory before any check could speak. So every file named by a user is
checked before it is opened, and opened without blocking, then checked again on
the open descriptor (a file swapped for a FIFO in between is caught too).

Errors name the file and what it was meant to be (``what``): a folder or a special
file is a ValueError, a missing file a FileNotFoundError, an unreadable one a
PermissionError, each with a message fit for a user (no ``[Errno 13]``).

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as folder:
...     check_regular_file(folder, what="IDX file")
Traceback (most recent call last):
...
ValueError: IDX file '...' must be a regular file, got a folder
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _refuse(path: Path, what: str, mode: int) -> ValueError:
    kind = _kind(mode)
    why = "" if stat.S_ISDIR(mode) else (
        ", which is never read (it could block or never end); name a regular file instead")
    return ValueError(f"{what} {str(path)!r} must be a regular file, got {kind}{why}")


def unreadable(path: os.PathLike | str, what: str, err: OSError) -> OSError:
    """``err`` (raised opening or reading ``path``) as the same kind of error with a
    message naming ``what`` and the file."""
    reason = err.strerror or str(err)
    if isinstance(err, PermissionError):
        return PermissionError(f"{what} {str(path)!r} cannot be read: {reason.lower()} "
                               "(check the file's permissions and owner)")
    if isinstance(err, FileNotFoundError):
        return FileNotFoundError(f"{what} {str(path)!r} does not exist")
    return type(err)(f"{what} {str(path)!r} cannot be read: {reason}")


def check_regular_file(path: os.PathLike | str, *, what: str = "file") -> os.stat_result:
    """The ``os.stat`` of ``path`` after checking it names a regular file (links followed)."""
    path = Path(path)
    try:
        info = os.stat(path)
    except OSError as err:
        raise unreadable(path, what, err) from None
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(path, what, info.st_mode)
    return info


def open_regular(path: os.PathLike | str, *, what: str = "file") -> BinaryIO:
    """``path`` opened for binary reading, after :func:`check_regular_file`.

    The descriptor is opened with ``O_NONBLOCK`` (so that a FIFO put in the file's
    place after the check cannot block the open) and checked again with ``fstat``.
    """
    path = Path(path)
    check_regular_file(path, what=what)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise unreadable(path, what, err) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _refuse(path, what, mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: os.PathLike | str, *, what: str = "file", limit: int | None = None) -> bytes:
    """The bytes of the regular file ``path``; with ``limit``, a file larger than
    ``limit`` bytes is a ValueError before anything is read."""
    with open_regular(path, what=what) as f:
        size = os.fstat(f.fileno()).st_size
        if limit is not None and size > limit:
            raise ValueError(f"{what} {str(path)!r} must be at most {limit:,} bytes, got "
                             f"{size:,} bytes")
        try:
            data = f.read(size + 1 if limit is not None else -1)
        except OSError as err:
            raise unreadable(path, what, err) from None
    if limit is not None and len(data) > limit:  # grew while being read
        raise ValueError(f"{what} {str(path)!r} must be at most {limit:,} bytes, it grew while "
                         "being read")
    return data
