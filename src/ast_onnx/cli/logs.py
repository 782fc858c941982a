"""The log set-up every ast-onnx command shares: WARNING by default, INFO with -v."""

from __future__ import annotations

import logging


def setup_logging(verbose: bool) -> None:
    """Log to stderr as ``LEVEL logger: message``, at INFO when ``verbose``."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
