"""The shared behaviour of the package's options dataclasses (Runtime, export, Triton).

Each is a frozen dataclass checked when built; :meth:`Replaceable.replace` makes a changed
copy (checked again) and names an unknown option instead of a bare ``TypeError``.

Each also owns its command-line flags, in the manner of onnxruntime's ``FusionOptions``:
a field's flag, help and argparse settings live in its metadata (:func:`option_flag`),
:meth:`Replaceable.add_arguments` declares them and :meth:`Replaceable.from_args` reads
them back, so an option is added in one place and every CLI that builds the options
object gets its flag.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

T = TypeVar("T", bound="Replaceable")

#: Where a flag is declared: the parser itself, an argument group or a mutually
#: exclusive group (argparse's ``_ActionsContainer``).
ArgumentContainer = Any


def option_flag(
    flag: str | Sequence[str],
    help: str,
    *,
    group: str | None = None,
    exclusive: str | None = None,
    convert: Callable[[Any], Any] | None = None,
    also: Sequence[tuple[str, str, dict[str, Any]]] = (),
    **argparse_kwargs: Any,
) -> dict[str, Any]:
    """Field metadata: the flag that sets a field, and how.

    Args:
        flag: The option string (or strings, e.g. ``("-q", "--quiet")``).
        help: Its ``--help`` line.
        group: Title of the argument group it is listed under (None: the parser's own).
        exclusive: Name of a mutually exclusive set of flags it belongs to.
        convert: Turns the parsed value into the field's value (None: taken as parsed).
        also: Further flags that set the same field: ``(flag, help, argparse settings)``,
            e.g. ``--fp16`` and ``--int8`` both setting ``precision``.
        **argparse_kwargs: ``add_argument`` settings (``type``, ``choices``, ``action``...).
    """
    flags = (flag,) if isinstance(flag, str) else tuple(flag)
    return {
        "flag": flags[-1],
        "flags": flags,
        "help": help,
        "group": group,
        "exclusive": exclusive,
        "convert": convert,
        "also": tuple(also),
        "argparse": argparse_kwargs,
    }


def nested_options(options_class: type[Replaceable]) -> dict[str, Any]:
    """Field metadata: the field is an options object of its own, with its own flags."""
    return {"nested": options_class}


def _declare(
    container: ArgumentContainer,
    flags: Sequence[str],
    dest: str,
    help: str,
    kwargs: dict[str, Any],
    default: Any,
) -> None:
    kwargs = dict(kwargs)
    action = kwargs.get("action")
    if action not in ("store_true", "store_false", "append") and "default" not in kwargs:
        kwargs["default"] = default
    if action is None and "choices" not in kwargs:
        kwargs.setdefault("metavar", flags[-1].lstrip("-").upper().replace("-", "_"))
    container.add_argument(*flags, dest=dest, help=help, **kwargs)


class Replaceable:
    """Mixin for frozen option dataclasses: ``replace(**changes)`` with a clear error, and
    the command-line flags of the fields that have one.

    Subclasses set :attr:`unknown_error` (the exception class), :attr:`options_name` (what
    the options are, for the message; a name no option field takes) and
    :attr:`flag_prefix` (the prefix of their flags' argparse ``dest``).
    """

    unknown_error: ClassVar[type[Exception]] = ValueError
    options_name: ClassVar[str] = "option"
    flag_prefix: ClassVar[str] = "option"

    def replace(self: T, **changes: Any) -> T:
        """A copy with ``changes`` applied; unknown names raise :attr:`unknown_error`."""
        names = [f.name for f in dataclasses.fields(self)]  # type: ignore[arg-type]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise self.unknown_error(
                f"unknown {self.options_name}(s) {unknown} for {type(self).__name__}; "
                f"expected some of {names}"
            )
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    @classmethod
    def flag_fields(cls) -> list[dataclasses.Field[Any]]:
        """The fields set from the command line (a flag, or nested options), in order."""
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        return [f for f in fields if "flag" in f.metadata or "nested" in f.metadata]

    @classmethod
    def flags(cls) -> dict[str, str]:
        """Field name -> its (main) command-line flag; nested options give their fields'."""
        out: dict[str, str] = {}
        for f in cls.flag_fields():
            nested = f.metadata.get("nested")
            if nested is not None:
                out.update({f"{f.name}.{k}": v for k, v in nested.flags().items()})
            else:
                out[f.name] = f.metadata["flag"]
        return out

    @classmethod
    def dest(cls, name: str) -> str:
        """The argparse ``dest`` of field ``name``'s flag."""
        return f"{cls.flag_prefix}_{name}"

    @classmethod
    def add_arguments(
        cls,
        parser: ArgumentContainer,
        groups: Mapping[str, ArgumentContainer] | None = None,
        skip: Collection[str] = (),
    ) -> None:
        """Declare the flag of each field that has one on ``parser``.

        Args:
            parser: An ``argparse.ArgumentParser`` (or an argument group).
            groups: Containers the caller made, by group title or exclusive-set name
                (e.g. a mutually exclusive group shared with a flag of its own); the
                others are made on first use.
            skip: Fields whose flag the caller declares itself (:meth:`from_args` then
                leaves them out).
        """
        made: dict[str, ArgumentContainer] = dict(groups or {})
        for f in cls.flag_fields():
            if f.name in skip:
                continue
            meta = f.metadata
            if "nested" in meta:
                meta["nested"].add_arguments(parser, made)
                continue
            container = parser
            title = meta["group"]
            if title is not None:
                if title not in made:
                    made[title] = parser.add_argument_group(title)
                container = made[title]
            exclusive = meta["exclusive"]
            if exclusive is not None:
                if exclusive not in made:
                    made[exclusive] = container.add_mutually_exclusive_group()
                container = made[exclusive]
            default = f.default if f.default is not dataclasses.MISSING else None
            dest = cls.dest(f.name)
            _declare(container, meta["flags"], dest, meta["help"], meta["argparse"], default)
            for flag, help, kwargs in meta["also"]:
                _declare(container, (flag,), dest, help, kwargs, default)

    @classmethod
    def flag_values(cls, args: argparse.Namespace) -> dict[str, Any]:
        """Field name -> value, for each field whose flag ``args`` holds."""
        values = {}
        for f in cls.flag_fields():
            if "nested" in f.metadata:
                values[f.name] = f.metadata["nested"].from_args(args)
                continue
            if not hasattr(args, cls.dest(f.name)):  # skipped in add_arguments
                continue
            value = getattr(args, cls.dest(f.name))
            convert = f.metadata["convert"]
            values[f.name] = value if convert is None else convert(value)
        return values

    @classmethod
    def from_args(cls: type[T], args: argparse.Namespace, **fields: Any) -> T:
        """The options the flags of :meth:`add_arguments` were given (``fields``: the rest)."""
        return cls(**cls.flag_values(args), **fields)
