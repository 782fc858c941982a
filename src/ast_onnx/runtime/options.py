"""Every knob of a :class:`~ast_onnx.runtime.Runtime`, in one dataclass that owns its CLI flags.

``Runtime``, ``ast-classify`` (plain and ``--ray``), the Ray actors and the Triton model
all build their Runtime from a :class:`RuntimeOptions`, so an option is added in one
place: a field here, with its flag and help in the field's metadata. The CLI side is
:meth:`RuntimeOptions.add_arguments` / :meth:`RuntimeOptions.from_args`, in the manner
of onnxruntime's ``FusionOptions``.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ast_onnx.errors import InvalidOptionError
from ast_onnx.frontend.audio import DEFAULT_MAX_SECONDS, check_max_seconds
from ast_onnx.metadata import ACTIVATIONS, Activation
from ast_onnx.options_base import Replaceable, option_flag
from ast_onnx.runtime.openvino import OPENVINO
from ast_onnx.runtime.providers import PROVIDER_CHAINS
from ast_onnx.runtime.scoring import AGGREGATIONS

#: Items per ``session.run`` unless the model or the caller says otherwise.
DEFAULT_BATCH_SIZE = 8
#: Most threads per CPU a session may be given (``threads``), and the bound on any
#: machine: more threads than cores only add memory (100,000 threads held gigabytes
#: for minutes, or crashed onnxruntime).
THREADS_PER_CPU = 4
MIN_THREADS_BOUND = 64


def cpu_count() -> int:
    """CPUs this process may run on (its affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def max_threads() -> int:
    """Most ``threads`` a session may be given here: 4 per CPU, and at least 64."""
    return max(THREADS_PER_CPU * cpu_count(), MIN_THREADS_BOUND)


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, or :class:`InvalidOptionError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidOptionError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _provider_option(text: str) -> tuple[str, str, str]:
    """``"cuda:cudnn_conv_algo_search=HEURISTIC"`` -> ``("cuda", key, value)``."""
    name, _, rest = text.partition(":")
    key, sep, value = rest.partition("=")
    if not (name and key and sep):
        raise argparse.ArgumentTypeError(
            f"expected PROVIDER:KEY=VALUE (e.g. cuda:gpu_mem_limit=1073741824), got {text!r}"
        )
    return name, key, value


def _provider_options(
    pairs: list[tuple[str, str, str]] | None,
) -> dict[str, dict[str, Any]] | None:
    """The ``--provider-option`` triples as ``{provider: {key: value}}`` (None: none)."""
    options: dict[str, dict[str, Any]] = {}
    for name, key, value in pairs or []:
        options.setdefault(name, {})[key] = value
    return options or None


@dataclass(frozen=True)
class RuntimeOptions(Replaceable):
    """How a Runtime opens and runs a model. Every field is an ``ast-classify`` flag.

    Attributes:
        providers: ``"auto"`` (TensorRT, else CUDA, else CPU: whatever onnxruntime offers),
            ``"cpu"``, ``"cuda"``, ``"tensorrt"``, or a list of provider names or
            ``(name, options)`` pairs, best first; or ``"openvino"``: the OpenVINO runtime
            (extra ``[openvino]``, :mod:`ast_onnx.runtime.openvino`) instead of onnxruntime.
        device_id: CUDA device for CUDA/TensorRT.
        threads: Intra-op threads of the session (None: onnxruntime's default, one per
            physical core); at most :func:`max_threads` (4 per CPU, at least 64).
        fallback: Accept a requested provider being unavailable or failing to load, with a
            warning, instead of raising :class:`~ast_onnx.errors.ProviderError`.
        labels: Class names (list, or a .txt file with one per line, or a .json list /
            ``id2label`` file). Required in practice for models without ast-onnx metadata;
            overrides the metadata's labels otherwise.
        activation: ``"sigmoid"`` or ``"softmax"``; None takes the model's metadata, and
            ``"sigmoid"`` for models without it.
        batch_size: Most items (inputs or windows of long inputs) per ``session.run``,
            and the largest batch of the TensorRT optimization profile. None: 8, or 1 for
            dynamic int8 models (they quantize activations with one scale over the whole
            batch, so batching would make an item's scores depend on its batch peers; on
            CPU it is not faster either).
        cache_dir: TensorRT engine/timing cache directory (default ``~/.cache/ast-onnx/trt``).
        window_hop: Seconds between windows of inputs longer than the model's window
            (default: half a window, rounded down to whole frames: 5.12 s for AST).
        aggregate: How window scores become the input's scores: ``"mean"`` (the average
            over the recording) or ``"max"`` (a label is as strong as its best window).
        gpu_mem_limit: CUDA memory arena limit in bytes.
        provider_options: Extra options per provider name, merged over the defaults.
        prepack: Let onnxruntime repack the MatMul weights for its CPU kernels at load
            (its default). ``False`` starts faster and, with an ``--external-data`` model,
            keeps the weights memory-mapped and shared between processes; inference is
            1-10 % slower, so it suits short-lived processes.
        max_audio_seconds: Longest input accepted, checked before decoding or resampling
            (None: :data:`~ast_onnx.frontend.audio.DEFAULT_MAX_SECONDS`, one hour;
            ``math.inf``: no limit).
        allow_any_ops: Load a graph with operators no ast-onnx export contains (control
            flow such as ``Loop``, other domains). Off by default: model files are
            untrusted and such a graph can run without end
            (:data:`~ast_onnx.runtime.graph_ops.ALLOWED_OPS`).
        run_timeout: Seconds one model call (``session.run``) may take before it is
            stopped with :class:`~ast_onnx.errors.ModelTimeoutError` (None: no limit).
            onnxruntime only; a call is stopped between two operators.
    """

    unknown_error: ClassVar[type[Exception]] = InvalidOptionError
    options_name: ClassVar[str] = "Runtime option"
    flag_prefix: ClassVar[str] = "runtime"

    providers: str | Sequence[Any] = field(
        default="auto",
        metadata=option_flag(
            "--provider",
            "execution provider (default auto: TensorRT > CUDA > CPU)",
            choices=["auto", *PROVIDER_CHAINS, OPENVINO],
        ),
    )
    device_id: int = field(default=0, metadata=option_flag("--device-id", "CUDA device", type=int))
    threads: int | None = field(
        default=None, metadata=option_flag("--threads", "intra-op threads", type=int)
    )
    fallback: bool = field(
        default=False,
        metadata=option_flag("--fallback", "fall back if the provider fails", action="store_true"),
    )
    labels: Sequence[str] | str | os.PathLike[str] | None = field(
        default=None,
        metadata=option_flag("--labels", "labels file for models without ast-onnx metadata"),
    )
    activation: Activation | None = field(
        default=None,
        metadata=option_flag(
            "--activation",
            "override the model's activation (default: its metadata; sigmoid without)",
            choices=list(ACTIVATIONS),
        ),
    )
    batch_size: int | None = field(
        default=None,
        metadata=option_flag(
            "--batch-size",
            f"items per model run (default {DEFAULT_BATCH_SIZE}; 1 for dynamic int8 models, "
            "so that their scores do not depend on batch peers)",
            type=int,
        ),
    )
    cache_dir: str | os.PathLike[str] | None = field(
        default=None,
        metadata=option_flag("--cache-dir", "TensorRT engine and timing cache directory"),
    )
    window_hop: float | None = field(
        default=None,
        metadata=option_flag("--hop", "seconds between windows of long audio", type=float),
    )
    aggregate: str = field(
        default="mean",
        metadata=option_flag("--aggregate", "window aggregation", choices=list(AGGREGATIONS)),
    )
    gpu_mem_limit: int | None = field(
        default=None, metadata=option_flag("--gpu-mem-limit", "CUDA arena limit in bytes", type=int)
    )
    provider_options: dict[str, dict[str, Any]] | None = field(
        default=None,
        metadata=option_flag(
            "--provider-option",
            "extra provider option PROVIDER:KEY=VALUE (repeatable), e.g. "
            "tensorrt:trt_max_workspace_size=2147483648",
            type=_provider_option,
            action="append",
            convert=_provider_options,
            metavar="PROVIDER:KEY=VALUE",
        ),
    )
    max_audio_seconds: float | None = field(
        default=None,
        metadata=option_flag(
            "--max-audio-seconds",
            "refuse audio longer than this many seconds, before decoding it "
            f"(default {DEFAULT_MAX_SECONDS:g}; 'inf': no limit)",
            type=float,
        ),
    )
    prepack: bool = field(
        default=True,
        metadata=option_flag(
            "--no-prepack",
            "skip onnxruntime's weight prepacking: a faster start (with an --external-data "
            "model, the weights are memory-mapped), slightly slower inference",
            action="store_false",
        ),
    )

    allow_any_ops: bool = field(
        default=False,
        metadata=option_flag(
            "--allow-any-ops",
            "load a model whose graph has operators ast-onnx exports never contain "
            "(control flow such as Loop, other domains): only for model files you trust",
            action="store_true",
        ),
    )
    run_timeout: float | None = field(
        default=None,
        metadata=option_flag(
            "--run-timeout",
            "stop a model call that runs longer than this many seconds (that file's error row)",
            type=float,
        ),
    )

    def __post_init__(self) -> None:
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size, 1)
        check_int("device_id", self.device_id, 0)
        if self.threads is not None:
            check_int("threads", self.threads, 1)
            if self.threads > max_threads():
                raise InvalidOptionError(
                    f"threads must be at most {max_threads()} ({THREADS_PER_CPU} per CPU of "
                    f"this machine's {cpu_count()}, at least {MIN_THREADS_BOUND}), "
                    f"got {self.threads}"
                )
        if self.aggregate not in AGGREGATIONS:
            raise InvalidOptionError(
                f"aggregate must be one of {AGGREGATIONS}, got {self.aggregate!r}"
            )
        if self.activation is not None and self.activation not in ACTIVATIONS:
            raise InvalidOptionError(
                f"activation must be one of {ACTIVATIONS} or None, got {self.activation!r}"
            )
        if self.window_hop is not None and not (
            isinstance(self.window_hop, (int, float)) and np.isfinite(self.window_hop)
        ):
            raise InvalidOptionError(
                f"window_hop must be a number of seconds, got {self.window_hop!r}"
            )
        if self.gpu_mem_limit is not None:
            check_int("gpu_mem_limit", self.gpu_mem_limit, 1)
        if self.max_audio_seconds is not None:
            check_max_seconds(self.max_audio_seconds)
        if not isinstance(self.allow_any_ops, bool):
            raise InvalidOptionError(f"allow_any_ops must be a bool, got {self.allow_any_ops!r}")
        if self.run_timeout is not None and not (
            isinstance(self.run_timeout, (int, float, np.integer, np.floating))
            and not isinstance(self.run_timeout, bool)
            and 0 < self.run_timeout < math.inf
        ):
            raise InvalidOptionError(
                f"run_timeout must be a number of seconds > 0 (None: no limit), "
                f"got {self.run_timeout!r}"
            )
