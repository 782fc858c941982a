"""Human-readable CLI output that an untrusted label or file name cannot forge.

Labels come from model files and paths from the file system: either may hold ANSI
escapes (which drive the terminal), newlines (which fake extra result lines) or other
control characters. Text output passes them through :func:`escape_control`; JSON
output stays exact (``json.dumps`` escapes control characters itself).
"""

from __future__ import annotations


def escape_control(text: object) -> str:
    """``str(text)`` with every non-printable character written as its Python escape.

    Non-printable is :meth:`str.isprintable`'s rule, the one ``repr`` uses: C0/C1
    controls, DEL, line/paragraph separators, bidi and other format characters. An ESC
    becomes the four characters ``\\x1b``, a newline ``\\n``, U+202E ``\\u202e``;
    printable text (any script, spaces, backslashes) is kept as it is.

    Args:
        text: A label, a path or a message.

    Returns:
        A string safe to print on one terminal line.
    """
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def json_text(text: object) -> str:
    """``str(text)`` that strict JSON parsers accept: a file name's undecodable bytes
    (lone surrogates from ``os.fsdecode``) become ``\\xNN`` escapes, valid text readers keep.
    """
    s = str(text)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return s
