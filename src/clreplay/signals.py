"""SIGTERM handled like Ctrl-C, for the time a run lasts.

Clusters end a job (pre-emption, a time limit, ``scancel``) with SIGTERM, then
SIGKILL after a grace period. Python's default for SIGTERM is to die at once: no
message, and the locks' files left in the run's folders. Inside
:func:`sigterm_interrupts`, SIGTERM raises :class:`Terminated`, a
``KeyboardInterrupt``, so a run unwinds as it does on Ctrl-C: the last checkpoint
stays as it was (saves are atomic), the folders' locks are released, and the
command says what was saved and to run it again; ``clreplay run`` then exits with
143 (128 + SIGTERM), as a process killed by SIGTERM would.

A second SIGTERM while the run unwinds is ignored, so that the clean-up (closing
logs, releasing locks) finishes; SIGKILL still ends the process at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

#: The exit status of a run ended by SIGTERM (what a shell reports for a process
#: killed by it).
SIGTERM_EXIT_STATUS = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM during a run; unwinds like Ctrl-C (``message`` says what happened)."""

    exit_status = SIGTERM_EXIT_STATUS
    reason = "terminated (SIGTERM)"

    def __init__(self, message: str = "terminated (SIGTERM)") -> None:
        super().__init__(message)
        self.message = message


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (once).

    Elsewhere than in the main thread (where Python cannot install a handler) the
    block runs unchanged. The previous handler is restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def handler(signum, frame) -> None:
        nonlocal fired
        if fired:  # already unwinding: let the clean-up finish
            return
        fired = True
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
