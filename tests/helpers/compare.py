"""Comparing scores or logits against a reference with a tolerance on the value range."""

from __future__ import annotations

import numpy as np


def assert_close_in_range(got, want, rel: float, top1: float | None = 1.0) -> None:
    """``got`` within ``rel`` of ``want``'s value range everywhere, and top-1 agreement.

    The bound is ``rel * (max(want) - min(want))``: relative to the spread of the signal
    (logits or scores), so a tolerance cannot be wider than what it is meant to check.
    Top-1 agreement (rows whose arg-max agree) must reach ``top1`` (None: not checked).
    Both are computed here with numpy, independently of :mod:`ast_onnx.quality`.
    """
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    span = float(want.max() - want.min())
    assert span > 0, "the reference is constant: nothing to compare"
    err = float(np.abs(got - want).max())
    assert err <= rel * span, f"max abs {err:.3g} > {rel:g} x range {span:.3g}"
    if top1 is not None:
        rows_got, rows_want = got.reshape(-1, got.shape[-1]), want.reshape(-1, want.shape[-1])
        agree = float(np.mean(rows_got.argmax(-1) == rows_want.argmax(-1)))
        assert agree >= top1, f"top-1 agreement {agree:.3f} < {top1}"
