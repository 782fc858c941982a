"""SIGTERM handled like Ctrl-C, so ``kill``, ``timeout`` and container stops clean up too.

Python turns SIGINT into :class:`KeyboardInterrupt`, which unwinds every ``with`` and
``finally`` (temporary files, work folders); its default SIGTERM kills the process on
the spot and leaves them behind. Inside :func:`terminate_as_interrupt`, SIGTERM raises
:class:`Terminated`, a ``KeyboardInterrupt``, so the same clean-up and the same exit
status (130) follow.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM."""


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated`; the old handler is restored after.

    A second SIGTERM while the first one's clean-up runs is ignored (SIGKILL still
    stops the process). Outside the main thread (where handlers cannot be set) this
    does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the clean-up finish
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
