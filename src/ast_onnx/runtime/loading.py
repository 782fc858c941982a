"""Opening a model on the providers a :class:`~ast_onnx.runtime.RuntimeOptions` asks for.

The provider plan (:mod:`.providers`), the session options, the TensorRT settings probed
from the model, the session itself and the check that onnxruntime kept the provider
that was asked for: the part of building a Runtime that talks to onnxruntime.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ast_onnx.errors import InvalidOptionError, MissingDependencyError, ProviderError
from ast_onnx.runtime.graph_ops import check_graph_ops
from ast_onnx.runtime.openvino import (
    OPENVINO,
    OpenVinoSession,
    open_openvino,
    openvino_installed,
)
from ast_onnx.runtime.options import DEFAULT_BATCH_SIZE, RuntimeOptions
from ast_onnx.runtime.providers import (
    PROVIDER_NAMES,
    ProviderSettings,
    build_provider_list,
    check_session_providers,
    import_onnxruntime,
    select_providers,
    short_name,
)
from ast_onnx.runtime.session import create_session, probe_trt_settings

logger = logging.getLogger(__name__)

#: Whether ``providers="auto"`` picks OpenVINO (where installed) over onnxruntime's CPU
#: provider when no GPU provider is offered. Off: on the 2-core AVX2 EPYC it was measured on,
#: onnxruntime was the faster fp32 engine (benchmarks/RESULTS.md, "OpenVINO").
AUTO_PREFERS_OPENVINO = False


def wants_openvino(providers: Any, gpu_offered: Callable[[], bool]) -> bool:
    """Whether a provider request is served by OpenVINO rather than onnxruntime.

    ``"openvino"`` asks for it; ``"auto"`` picks it when :data:`AUTO_PREFERS_OPENVINO`,
    it is installed and onnxruntime offers no GPU provider (``gpu_offered()``, asked only
    then: the OpenVINO route needs no onnxruntime). In a list it is refused:
    OpenVINO is an engine of its own, not a link of an onnxruntime provider chain.

    Raises:
        ProviderError: ``"openvino"`` inside a list of providers.
    """
    if isinstance(providers, str):
        key = providers.lower()
        if key == "auto":
            return AUTO_PREFERS_OPENVINO and openvino_installed() and not gpu_offered()
        return key == OPENVINO
    names = [p if isinstance(p, str) else p[0] for p in providers]
    if any(str(n).lower() == OPENVINO for n in names):
        raise ProviderError(
            f"providers={list(names)!r}: 'openvino' runs a model on its own, not in an "
            "onnxruntime provider chain; pass providers='openvino' (with fallback=True to "
            "fall back to onnxruntime's CPU provider)"
        )
    return False


def _gpu_offered() -> bool:
    available = import_onnxruntime().get_available_providers()
    return any(PROVIDER_NAMES[s] in available for s in ("cuda", "tensorrt"))


def _open_openvino(path: str | os.PathLike[str], opts: RuntimeOptions) -> OpenVinoSession | None:
    """The OpenVINO session, or ``None`` to fall back to onnxruntime CPU (``opts.fallback``)."""
    options = (opts.provider_options or {}).get(OPENVINO)
    try:
        return open_openvino(path, opts.threads, options)
    except (ProviderError, MissingDependencyError) as e:
        if not opts.fallback:
            raise
        logger.warning("%s; falling back to onnxruntime's CPU provider", e)
        return None


def resolve_model_path(path: str | os.PathLike[str]) -> str | os.PathLike[str]:
    """The file a model name means: ``"demo"`` is the bundled demo model, else ``path``.

    Only the exact name ``"demo"`` is resolved (as ``ast-export --checkpoint demo`` does);
    a file of that name is reached as ``./demo``.
    """
    from ast_onnx.data import DEMO_MODEL, demo_model_path

    return demo_model_path() if isinstance(path, str) and path == DEMO_MODEL else path


def open_session(path: str | os.PathLike[str], opts: RuntimeOptions) -> tuple[Any, str]:
    """``(session, provider)``: the session and the short name it runs on.

    The session is onnxruntime's, or for ``"openvino"`` an
    :class:`~ast_onnx.runtime.openvino.OpenVinoSession` with the same interface.

    Unless ``opts.allow_any_ops``, the graph's operators are checked first
    (:func:`~ast_onnx.runtime.graph_ops.check_graph_ops`).

    Raises:
        ModelError: Missing or corrupt model file, or a graph with operators no
            ast-onnx export contains.
        InvalidOptionError: ``run_timeout`` with OpenVINO.
        ProviderError: A requested provider is unavailable or was dropped at creation
            (unless ``opts.fallback``).
        MissingDependencyError: onnxruntime (or for ``"openvino"``, openvino) is not
            installed (unless ``opts.fallback`` for openvino).
    """
    path = resolve_model_path(path)
    if not opts.allow_any_ops and Path(path).is_file():
        check_graph_ops(path)
    if wants_openvino(opts.providers, _gpu_offered):
        if opts.run_timeout is not None:
            raise InvalidOptionError(
                "run_timeout applies to onnxruntime sessions: an OpenVINO call cannot be "
                "stopped; leave run_timeout=None or pick an onnxruntime provider"
            )
        session = _open_openvino(path, opts)
        if session is not None:
            return session, OPENVINO
        opts = opts.replace(providers="cpu")
    ort = import_onnxruntime()
    plan = select_providers(opts.providers, ort.get_available_providers(), opts.fallback)
    if opts.provider_options:
        extra = {PROVIDER_NAMES.get(k, k): v for k, v in opts.provider_options.items()}
        merged = {**dict(plan.user_options), **extra}
        plan = type(plan)(plan.chain, plan.explicit, tuple(merged.items()))
    session_options = ort.SessionOptions()
    if opts.threads is not None:
        session_options.intra_op_num_threads = opts.threads
    if not opts.prepack:
        session_options.add_session_config_entry("session.disable_prepacking", "1")
    settings = ProviderSettings(
        device_id=opts.device_id,
        batch_size=opts.batch_size or DEFAULT_BATCH_SIZE,
        cache_dir=opts.cache_dir,
        gpu_mem_limit=opts.gpu_mem_limit,
    )
    if PROVIDER_NAMES["tensorrt"] in plan.chain:
        settings = probe_trt_settings(ort, path, settings)
    chain = build_provider_list(plan, settings, ort.__version__)
    session = create_session(
        ort, path, session_options, chain, fallback=opts.fallback or not plan.explicit
    )
    used = check_session_providers(plan, session.get_providers(), fallback=opts.fallback)
    return session, short_name(used)
