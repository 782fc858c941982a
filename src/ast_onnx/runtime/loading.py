"""Opening a model on the providers a :class:`~ast_onnx.runtime.RuntimeOptions` asks for.

The provider plan (:mod:`.providers`), the session options, the TensorRT settings probed
from the model, the session itself and the check that onnxruntime kept the provider
that was asked for: the part of building a Runtime that talks to onnxruntime.
"""

from __future__ import annotations

import os
from typing import Any

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


def open_session(path: str | os.PathLike, opts: RuntimeOptions) -> tuple[Any, str]:
    """``(session, provider)``: the onnxruntime session and the short name it runs on.

    Raises:
        ModelError: Missing or corrupt model file.
        ProviderError: A requested provider is unavailable or was dropped at creation
            (unless ``opts.fallback``).
        MissingDependencyError: onnxruntime is not installed.
    """
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
