"""Progress display of the slow export steps (rich status on stderr) and step timings."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger(__name__)


class StepTimer:
    """Times named steps; with ``show=True`` also shows a spinner line per step on stderr.

    Args:
        show: Display progress with rich (falls back to logging when rich is absent).
    """

    def __init__(self, show: bool = False) -> None:
        self.seconds: dict[str, float] = {}
        self._console: Any = None
        if show:
            try:
                from rich.console import Console

                self._console = Console(stderr=True)
            except ImportError:
                logger.info("rich is not installed: no progress display")

    @contextlib.contextmanager
    def step(self, name: str, description: str) -> Iterator[None]:
        """Run one step: ``name`` keys the timing, ``description`` is shown."""
        logger.info("%s ...", description)
        start = time.perf_counter()
        status = (
            self._console.status(f"{description} ...", spinner="dots")
            if self._console is not None
            else contextlib.nullcontext()
        )
        ok = False
        try:
            with status:
                yield
            ok = True
        finally:
            elapsed = time.perf_counter() - start
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
            if self._console is not None:
                mark = "[green]✓[/green]" if ok else "[red]✗[/red]"
                self._console.print(f"{mark} {description} [dim]({elapsed:.1f} s)[/dim]")
            logger.info("%s: %s in %.1f s", description, "done" if ok else "failed", elapsed)


class _DropMessages(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


@contextlib.contextmanager
def quiet_logs(loggers: tuple[str, ...] = (), drop: tuple[str, ...] = ()) -> Iterator[None]:
    """Silence expected third-party chatter during a step (kept when ast_onnx logs DEBUG).

    Args:
        loggers: Logger names raised to ERROR for the block.
        drop: Message prefixes dropped from the root logger's records for the block.
    """
    if logging.getLogger("ast_onnx").isEnabledFor(logging.DEBUG):
        yield
        return
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
    root = logging.getLogger()
    dropper = _DropMessages(drop)
    if drop:
        root.addFilter(dropper)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        root.removeFilter(dropper)
