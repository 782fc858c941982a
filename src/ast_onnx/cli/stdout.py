"""Standard output that is closed, full or gone: one line on stderr, never a traceback.

``ast-classify ... | head -1`` closes the pipe early (the reader is done: exit 0, quietly,
as ``ast-stream`` always did); ``> /dev/full`` or a full disk fails a write (one line,
exit 1); a command started with stdout closed (``>&-``) is refused before any work.
Exit statuses come from :mod:`ast_onnx.cli.exit_codes`.
"""

from __future__ import annotations

import os
import sys

from ast_onnx.cli import exit_codes


class OutputGone(Exception):
    """Writing to stdout failed with :attr:`error` (raised by writers to tell it from input)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def stdout_missing(prog: str) -> int | None:
    """The exit status when stdout is closed (``>&-``), after one line on stderr; else None."""
    if sys.stdout is not None:
        return None
    if sys.stderr is not None:
        print(f"{prog}: error: standard output is closed; redirect it to a file", file=sys.stderr)
    return exit_codes.FAILED


def silence() -> None:
    """Point stdout's descriptor at /dev/null so that later flushes (at exit) cannot fail."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a test's capture, or closed
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def write_failed(prog: str, error: OSError) -> int:
    """The exit status after writing to stdout raised ``error``; one line on stderr.

    A closed pipe (the reader went away, e.g. ``| head``) is not an error: exit 0 and no
    message. Any other write error (``/dev/full``: no space left) is exit 1.
    """
    silence()
    if isinstance(error, BrokenPipeError):
        return exit_codes.OK
    reason = error.strerror or str(error)
    print(f"{prog}: error: cannot write to standard output: {reason}", file=sys.stderr)
    return exit_codes.FAILED


def finish(prog: str, status: int) -> int:
    """Flush stdout (buffered lines fail only here on a full disk); the final exit status."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except OSError as e:
        return write_failed(prog, e) or status
    return status
