"""Atomic writes: a kill at any instant leaves either the previous file or the new one.

A file is written to a temporary file in the same folder, flushed and fsynced,
then renamed over the old one; saves to one path from several processes take
turns (a lock file beside it), so none deletes another's file in flight.
"""

from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path
from typing import Any, Union

import torch

from clreplay.locking import lock_file

PathLike = Union[str, "os.PathLike[str]"]


def check_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if str(path) in ("", "."):
        raise ValueError(f"path must name a file, got {str(path)!r}")
    if path.is_dir():
        raise ValueError(f"path must name a file, got the folder {str(path)!r}")
    return path


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on every platform.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(payload: dict, path: Path) -> None:
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}."
    # Saves to one path take turns: the stale-file cleanup below may then delete every
    # temporary file it finds, since no other save can have one in flight.
    with lock_file(folder / f".{path.name}.lock", blocking=True):
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                try:
                    torch.save(payload, f)
                except RuntimeError as err:
                    # torch's writer reports a failed write (a full disk) as a RuntimeError
                    # whose context is the OSError: raise that, naming the file.
                    cause = err.__cause__ or err.__context__
                    if isinstance(cause, OSError):
                        raise OSError(cause.errno, cause.strerror or str(cause), tmp) from err
                    raise
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_folder(folder)
        # Temporary files of saves that were killed mid-write: the new file supersedes them.
        for stale in folder.glob(f"{glob.escape(prefix)}*.tmp"):
            stale.unlink(missing_ok=True)


def remove_stale_temporaries(path: PathLike) -> None:
    """Remove what saves to ``path`` killed mid-write left beside it (temporary files, and
    their lock file, whose lock died with them), waiting for a save in flight to end."""
    path = check_path(path)
    if not path.parent.is_dir():
        return
    prefix = f".{path.name}."
    with lock_file(path.parent / f".{path.name}.lock", blocking=True):
        for stale in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
            stale.unlink(missing_ok=True)


