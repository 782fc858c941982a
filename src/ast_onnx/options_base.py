"""The shared behaviour of the package's options dataclasses (Runtime, export, Triton).

Each is a frozen dataclass checked when built; :meth:`Replaceable.replace` makes a changed
copy (checked again) and names an unknown option instead of a bare ``TypeError``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar


class Replaceable:
    """Mixin for frozen option dataclasses: ``replace(**changes)`` with a clear error.

    Subclasses set :attr:`unknown_error` (the exception class) and :attr:`kind` (what the
    options are, for the message).
    """

    unknown_error: ClassVar[type[Exception]] = ValueError
    kind: ClassVar[str] = "option"

    def replace(self, **changes: Any) -> Any:
        """A copy with ``changes`` applied; unknown names raise :attr:`unknown_error`."""
        names = [f.name for f in dataclasses.fields(self)]  # type: ignore[arg-type]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise self.unknown_error(f"unknown {self.kind}(s) {unknown}; expected some of {names}")
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]
