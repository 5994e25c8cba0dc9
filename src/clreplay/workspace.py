"""The folders a run writes into: checked before the first step, held for the run's
lifetime, never holding two runs' files mixed.

* :func:`check_folder` — a flag naming a file, or a folder that cannot be written,
  is an error naming the flag before any work is done.
* :func:`prepare_output` — the output folder's policy. A fresh run refuses a
  non-empty folder unless ``overwrite``, which removes the files a run writes
  (:data:`RUN_FILES`) and nothing else. A resumed run whose checkpoint was saved
  with this same output folder cuts its logs back to what the checkpoint covers
  (rows of attempts that were rolled back disappear) and removes the files written
  after it. A symbolic link in a run file's place is removed itself, never followed:
  what it points to is never truncated or deleted.
* :func:`log_sizes` — what a checkpoint records about the logs, for that cut.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from clreplay.locking import LOCK_FILENAME

#: Files and folders ``clreplay run --output DIR`` writes into DIR.
RUN_FILES = ("results.json", "log.txt", "events.jsonl", "epochs.csv", "experiences.csv",
             "accuracy_matrix.png", "accuracy_curves.png", "task_accuracy_matrix.png", "tensorboard")


def check_folder(path, flag: str) -> Path:
    """``path`` as a folder this process can write into (created if missing), or a
    ValueError naming ``flag`` and what is wrong (a file, not writable)."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{flag} must name a folder, got the file {str(folder)!r}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{flag} must name a folder that can be created, got {str(folder)!r}: "
                         f"{err.strerror or err}") from None
    try:  # os.access says yes to root on a read-only mount: try for real
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".clreplay-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"{flag} must name a folder this process can write into, got "
                         f"{str(folder)!r}: {err.strerror or err}") from None
    return folder


def _entries(folder: Path) -> List[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != LOCK_FILENAME) if folder.is_dir() else []


def _files(folder: Path) -> List[Path]:
    """The run files present in ``folder`` (files inside ``tensorboard/`` one by one)."""
    found = []
    for name in RUN_FILES:
        path = folder / name
        if path.is_symlink():  # a link is never followed: the link itself is the entry
            found.append(path)
        elif path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_symlink() or p.is_file())
        elif path.exists():
            found.append(path)
    return found


def log_sizes(output) -> Dict[str, int]:
    """Sizes in bytes of the run files in ``output`` (relative paths), taken when a
    checkpoint is saved; :func:`prepare_output` cuts the files back to them on resume."""
    folder = Path(output)
    return {str(p.relative_to(folder)): p.stat().st_size for p in _files(folder) if not p.is_symlink()}


def _remove_run_files(folder: Path) -> None:
    for name in RUN_FILES:
        path = folder / name
        if path.is_symlink():
            path.unlink()  # the link, never what it points to
        elif path.is_dir():
            shutil.rmtree(path)  # removes links inside it without following them
        elif path.exists():
            path.unlink()


def _truncate_to(folder: Path, sizes: Mapping[str, int]) -> None:
    for path in _files(folder):
        size = sizes.get(str(path.relative_to(folder)))
        if size is None or path.is_symlink():
            # Written after the checkpoint (by an attempt that was rolled back), or a link
            # put in a run file's place: removed itself, what a link points to untouched.
            path.unlink()
        elif path.stat().st_size > size:
            os.truncate(path, size)


def prepare_output(output, *, flag: str, overwrite: bool, saved: Optional[Mapping] = None,
                   overwrite_flag: str = "overwrite=True") -> bool:
    """Make ``output`` ready for this run; return whether the logs continue (append).

    ``saved`` is the ``metadata`` of the checkpoint being resumed (None for a fresh
    run): when it names this folder, the logs are cut back to its ``logs`` sizes and
    continued. Otherwise the folder must be empty, or ``overwrite`` removes the run
    files in it (other files are kept); anything else is a ValueError naming ``flag``
    (and ``overwrite_flag``, the way to say overwrite).
    """
    folder = Path(output)
    if saved and saved.get("output") == os.path.abspath(folder) and isinstance(saved.get("logs"), dict):
        _truncate_to(folder, saved["logs"])
        return True
    entries = _entries(folder)
    if not entries:
        return False
    if not overwrite:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise ValueError(
            f"{flag} must name an empty folder (or a run's own folder when resuming), got "
            f"{str(folder)!r} holding {shown}: pass {overwrite_flag} to replace the files of the earlier "
            "run, or choose another folder"
        )
    _remove_run_files(folder)
    return False
