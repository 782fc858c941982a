"""Protobuf text format for Triton configs, without protobuf: the fallback renderer.

:func:`.config.config_text` serializes a config through tritonclient's ModelConfig
when the ``triton`` extra is installed; without it, :func:`render_text` writes the same
description (ModelConfig's JSON mapping, enums as :class:`Enum`, maps as :class:`Map`)
with protobuf's text-format escaping. The tests check that both parse back to the same
message.
"""

from __future__ import annotations

from typing import Any

from ast_onnx.errors import ExportError


class Enum(str):
    """A ModelConfig enum value (written bare in the text format, e.g. ``TYPE_FP32``)."""


class Map(dict):
    """A ModelConfig ``map<string, string>`` field (``{ key: ... value: ... }`` entries)."""


def render_text(config: dict[str, Any], indent: int = 0) -> str:
    """Protobuf text format of a :func:`model_config` description, without protobuf."""
    pad = "  " * indent
    lines = []
    for key, value in config.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Map):  # map<string, string> or map<string, message>
                lines += [
                    f"{pad}{key} {{ key: {quote(k)} value"
                    + (
                        f": {quote(v)}"
                        if isinstance(v, str)
                        else f" {{ {render_text(v).strip()} }}"
                    )
                    + " }"
                    for k, v in item.items()
                ]
            elif isinstance(item, dict):
                lines += [f"{pad}{key} {{", render_text(item, indent + 1).rstrip("\n"), f"{pad}}}"]
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    return "\n".join(line for line in lines if line) + "\n"


def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    raise ExportError(f"cannot write {value!r} into a Triton config")


def quote(text: str) -> str:
    """A protobuf text-format string literal (as protobuf's ``CEscape`` writes it)."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in "\"'\\":
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:  # control characters and every byte of a non-ASCII character
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'
