"""The one exit-status table of every ast-onnx command (ast-classify, ast-embed, ast-export, ...).

======  ==========================================================================
status  meaning
======  ==========================================================================
0       success: every item was processed
1       bad input: a model, checkpoint or audio file that cannot be used, or at
        least one item failed (its error is reported; the other items still ran)
2       usage: the command line is malformed or an option value is out of range
3       a quality gate failed (``--max-drift``): the output or report is written
130     interrupted (Ctrl-C / SIGINT): finished output stays, one line on stderr
======  ==========================================================================

Standard output that the reader closed (``| head``) ends a command quietly with 0; a
failed write to it (``> /dev/full``) or a closed one (``>&-``) is one line and 1
(:mod:`ast_onnx.cli.stdout`). SIGTERM is handled as Ctrl-C where a command has output
to flush or files to clean up (``ast-export``, ``ast-stream``): 130.
"""

from __future__ import annotations

from ast_onnx.errors import BenchError, DriftError, InvalidOptionError

OK = 0
FAILED = 1
USAGE = 2
GATE_FAILED = 3
INTERRUPTED = 130

#: The table as one line, for the ``--help`` epilog of each command.
EPILOG = (
    f"exit status: {OK} ok; {FAILED} bad input or a failed item; {USAGE} usage error; "
    f"{GATE_FAILED} quality gate failed; {INTERRUPTED} interrupted"
)

#: Errors that mean the command line itself is wrong (exit :data:`USAGE`).
USAGE_ERRORS: tuple[type[Exception], ...] = (InvalidOptionError, BenchError)


def for_error(error: BaseException) -> int:
    """The exit status of a command that stopped on ``error``.

    Args:
        error: The exception that ended the command.

    Returns:
        :data:`INTERRUPTED` for ``KeyboardInterrupt``, :data:`GATE_FAILED` for a
        :class:`~ast_onnx.errors.DriftError`, :data:`USAGE` for option errors, else
        :data:`FAILED`.
    """
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(error, DriftError):
        return GATE_FAILED
    if isinstance(error, USAGE_ERRORS):
        return USAGE
    return FAILED
