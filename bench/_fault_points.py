"""The faults bench/fault_classes.py installs inside a child `clreplay run` (``--child POINT``):
each wraps a library or OS function of this process only, no hook in the library.

* ``save:N``: torch.save fails at its N-th call as on a full disk (half the bytes
  written, then torch's RuntimeError whose context is the ENOSPC OSError);
* ``log:B``: the loggers' files refuse writes (ENOSPC) once B bytes are written;
* ``memmap:N``: the N-th memory-mapped row write (``os.pwritev``) comes back short;
* ``deny:PATH``: opening PATH raises PermissionError, as chmod 000 does for anyone but root.
"""

from __future__ import annotations

import os
from typing import Sequence


def child(point: str, argv: Sequence[str]) -> int:
    """Run ``clreplay`` with ``argv`` after installing the fault ``point`` in this process."""
    import builtins
    import errno
    import io

    import torch

    import clreplay.evaluation.loggers as loggers
    from clreplay.cli import main

    kind, _, arg = point.partition(":")
    if kind == "save":  # torch.save failing at its arg-th call, as on a full disk
        real, calls = torch.save, {"n": 0}

        def save(obj, f, *a, **k):
            calls["n"] += 1
            if calls["n"] != int(arg):
                return real(obj, f, *a, **k)
            buffer = io.BytesIO()
            real(obj, buffer)
            f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")  # noqa: B904

        torch.save = save
    elif kind == "log":  # the loggers' files refuse writes once arg bytes are written
        budget = {"left": int(arg)}

        def open_full(path, *a, **k):
            stream = builtins.open(path, *a, **k)
            write = stream.write

            def limited(text):
                if budget["left"] < len(text):
                    raise OSError(errno.ENOSPC, "No space left on device")
                budget["left"] -= len(text)
                return write(text)

            stream.write = limited
            return stream

        loggers.open = open_full
    elif kind == "memmap":  # a memory-mapped row write coming back short at its arg-th call
        real_pwritev, calls = os.pwritev, {"n": 0}

        def short(fd, buffers, offset):
            calls["n"] += 1
            written = real_pwritev(fd, buffers, offset)
            return written - 1 if calls["n"] == int(arg) else written

        os.pwritev = short
    elif kind == "deny":  # open() of one file raising PermissionError, as chmod 000 does
        real_open, real_os_open = builtins.open, os.open

        def denied(path):
            return isinstance(path, (str, os.PathLike)) and os.path.abspath(os.fspath(path)) == arg

        def guarded_open(path, *a, **k):
            if denied(path):
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
            return real_open(path, *a, **k)

        def guarded_os_open(path, *a, **k):
            if denied(path):
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
            return real_os_open(path, *a, **k)

        builtins.open, os.open = guarded_open, guarded_os_open
    return main(list(argv))
