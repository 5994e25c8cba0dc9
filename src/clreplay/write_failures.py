"""A write that fails during a run (a full disk, a quota, an I/O error), told as a user
needs it: which folder, that the last checkpoint is intact, and how to go on.

A checkpoint is replaced atomically (:mod:`clreplay.checkpoint.atomic`), so a save
that fails leaves the previous one whole; a log file cut short is cut back to what
the checkpoint covers when the run resumes (:func:`clreplay.workspace.prepare_output`).
So the answer to any failed write is the same: make room, run the same command.

The folder is found from the error itself: the file it names when it names one,
else the innermost module of the library it was raised in (the checkpoint writer,
the loggers and result files, the memory-mapped storage).

>>> import errno
>>> err = OSError(errno.ENOSPC, "No space left on device", "/scratch/ck/.checkpoint.pt.x.tmp")
>>> print(describe_write_failure(err, {"checkpoint_dir": "/scratch/ck", "output": "/out"},
...                              names={"checkpoint_dir": "--checkpoint-dir"},
...                              checkpoint=Path("/scratch/ck/checkpoint.pt")))
--checkpoint-dir '/scratch/ck': writing the checkpoint failed: No space left on device; no checkpoint was saved yet: make room there and run the same command to start again
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional

#: The folder a failed write belongs to, by the library module it was raised in
#: (the innermost one listed here wins).
MODULE_FOLDERS = (
    ("clreplay.checkpoint", "checkpoint_dir"),
    ("clreplay.evaluation", "output"),
    ("clreplay.workspace", "output"),
    ("clreplay.replay.storage", "memmap_dir"),
)

#: What a run writes into each folder.
WRITTEN = {"checkpoint_dir": "the checkpoint", "output": "the run's logs and results",
           "memmap_dir": "the memory-mapped replay memory"}


class RunWriteError(RuntimeError):
    """A file of the run could not be written; the message names the folder's flag,
    what the last checkpoint holds and how to resume (``clreplay run`` exits with 1)."""


def _under(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([os.path.abspath(path), os.path.abspath(folder)]) == \
            os.path.abspath(folder)
    except ValueError:
        return False


def folder_of(err: BaseException, folders: Mapping[str, Optional[str]]) -> Optional[str]:
    """The field (``output``, ``checkpoint_dir``, ``memmap_dir``) of the folder ``err``
    was raised writing into, or None when nothing tells."""
    present = {field: folder for field, folder in folders.items() if folder}
    named = [getattr(err, "filename", None)] + re.findall(r"(/\S+)", str(err))
    for path in named:
        if isinstance(path, (str, os.PathLike)):
            for field, folder in present.items():
                if _under(os.fspath(path), folder):
                    return field
    found = None
    tb = err.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        for prefix, field in MODULE_FOLDERS:
            if (module == prefix or module.startswith(prefix + ".")) and field in present:
                found = field
        tb = tb.tb_next
    return found


def describe_write_failure(err: OSError, folders: Mapping[str, Optional[str]], *,
                           names: Optional[Mapping[str, str]] = None,
                           checkpoint: Optional[Path]) -> str:
    """One line: the folder (by its flag), what failed, what the last checkpoint holds
    (``checkpoint``: its file when the run has a checkpoint folder, else None)."""
    def name(field: str) -> str:
        return (names or {}).get(field, field)

    field = folder_of(err, folders)
    reason = err.strerror or str(err) or type(err).__name__
    if field is None:
        head = f"writing a file of the run failed: {reason}"
        if err.filename:
            head += f" ({err.filename})"
    else:
        head = f"{name(field)} {str(folders[field])!r}: writing {WRITTEN[field]} failed: {reason}"
    if checkpoint is not None and checkpoint.exists():
        tail = (f"the last checkpoint, {str(checkpoint)!r}, is intact: make room and run the same "
                "command to resume")
    elif checkpoint is not None:
        tail = "no checkpoint was saved yet: make room there and run the same command to start again"
    else:
        tail = (f"nothing was saved (no {name('checkpoint_dir')}): make room and run the "
                "command again")
    return f"{head}; {tail}"


@contextlib.contextmanager
def closing_after(close: Callable[[], None]) -> Iterator[None]:
    """Run the body, then ``close()``. When the body failed, a failure of ``close()``
    too (a log file flushed onto the same full disk) does not hide the first error."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            close()
        raise
    close()
