"""What makes a batch job's rows what they are, so a resume never mixes two jobs' rows.

A results file is resumed only by a run whose identity equals the one recorded
when the file was started (see :mod:`ast_onnx.distributed.output`): the model's
bytes (the ``.onnx`` file and its external data), its labels, and the options that
change a row (``top_k``, the aggregation, the window and hop, the event rules). The model is hashed
whole: sha256 runs at ~1.2 GB/s here (0.3 s for fp32 AST-base, 350 MB), once per
job on the driver, and a partial hash could miss a fine-tune that changed only some
weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ast_onnx.model_files import data_path

_CHUNK = 1 << 20


def model_fingerprint(path: str | os.PathLike, labels: Sequence[str] | None = None) -> str:
    """sha256 (hex) of the model file, its ``NAME.onnx.data`` if present, and ``labels``.

    File names are left out: a renamed or moved copy has the same fingerprint.
    """
    digest = hashlib.sha256()
    for role, file in (("model", Path(path)), ("data", data_path(Path(path)))):
        if not file.is_file():
            continue
        digest.update(f"{role}:{file.stat().st_size}\n".encode())
        with file.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    if labels is not None:
        digest.update(json.dumps(list(labels)).encode())
    return digest.hexdigest()


def events_identity(events: Any) -> dict[str, Any] | None:
    """The event rules of a run as JSON-able data (None: no events): rows made with other
    rules hold other events, so they are part of the identity."""
    from dataclasses import asdict

    from ast_onnx.runtime.events import EventOptions

    if events is None or events is False:
        return None
    rules = asdict(events if isinstance(events, EventOptions) else EventOptions())
    # Through JSON: tuples become lists, as in the recorded sidecar.
    return json.loads(json.dumps({**rules, "thresholds": dict(rules["thresholds"])}))


def run_identity(
    spec: Any, top_k: int, events: Any = None, embedding: bool = False
) -> dict[str, Any]:
    """The identity a results file records for a run of ``spec`` (a ``ModelSpec``).

    ``model`` (the file name) is informative only: a renamed or moved copy of the same
    model resumes. Every other key must match. ``events``: the job's event rules
    (``RayOptions.events``); absent from older sidecars, which then match runs without.
    ``embedding``: recorded (True) only for runs that write vectors, so that sidecars
    written before the option existed still match runs without it.
    """
    extra = {"embedding": True} if embedding else {}
    return {
        "model": spec.name,
        "model_sha256": spec.fingerprint or model_fingerprint(spec.path),
        "top_k": int(top_k),
        "aggregate": spec.runtime.aggregate,
        "sample_rate": spec.sample_rate,
        "window_samples": spec.window_samples,
        "hop_samples": spec.hop_samples,
        "events": events_identity(events),
        **extra,
    }


def same_run(recorded: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether rows recorded under ``recorded`` may be kept by a run of ``current``."""
    keys = (set(recorded) | set(current)) - {"model"}
    return all(recorded.get(k) == current.get(k) for k in keys)


def describe(identity: dict[str, Any]) -> str:
    """One short phrase naming an identity, for error messages."""
    sha = str(identity.get("model_sha256"))[:12]
    return (
        f"{identity.get('model')} (sha256 {sha}..., top_k {identity.get('top_k')}, "
        f"aggregate {identity.get('aggregate')}, window/hop {identity.get('window_samples')}/"
        f"{identity.get('hop_samples')} samples at {identity.get('sample_rate')} Hz)"
    )
