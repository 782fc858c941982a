"""Choosing onnxruntime execution providers: TensorRT > CUDA > CPU, checked, never silent.

One registry maps a short name to the provider chain that serves it (the first
entry is the one asked for, the rest take the nodes it cannot run). After the
session is created, :func:`check_session_providers` compares what onnxruntime
actually registered with what was asked: onnxruntime drops a provider that
fails to load (CUDA listed, cuBLAS missing) with only a log line, and we turn
that into a :class:`~ast_onnx.errors.ProviderError` unless falling back was allowed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ast_onnx.errors import ProviderError, require
from ast_onnx.metadata import INPUT_VALUES
from ast_onnx.paths import cache_root

logger = logging.getLogger(__name__)

#: Short name -> onnxruntime provider name.
PROVIDER_NAMES: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
#: onnxruntime's CPU provider: always available, the fallback of every chain.
CPU = PROVIDER_NAMES["cpu"]
#: Short name -> provider chain, in priority order.
PROVIDER_CHAINS: dict[str, tuple[str, ...]] = {
    "tensorrt": ("tensorrt", "cuda", "cpu"),
    "cuda": ("cuda", "cpu"),
    "cpu": ("cpu",),
}
#: What ``providers="auto"`` tries, best first.
AUTO_ORDER: tuple[str, ...] = ("tensorrt", "cuda", "cpu")
_SHORT_NAMES = {v: k for k, v in PROVIDER_NAMES.items()}

ProviderSpec = str | Sequence[str | tuple[str, dict[str, Any]]]


def import_onnxruntime() -> ModuleType:
    """Import onnxruntime, or raise :class:`MissingDependencyError` naming the extras."""
    return require(
        "onnxruntime",
        "cpu",
        "the ast-onnx runtime",
        hint='(or "ast-onnx[gpu]" for CUDA/TensorRT; never both)',
    )


def short_name(provider: str) -> str:
    """``"CUDAExecutionProvider"`` -> ``"cuda"``; unknown names are returned unchanged."""
    return _SHORT_NAMES.get(provider, provider)


def default_cache_dir() -> Path:
    """Where TensorRT engines and timing caches go: ``trt/`` under :func:`cache_root`."""
    return cache_root() / "trt"


@dataclass(frozen=True)
class ProviderPlan:
    """The providers to ask onnxruntime for.

    Attributes:
        chain: onnxruntime provider names in priority order; ``chain[0]`` is the one wanted.
        explicit: False for ``"auto"`` (whose fallbacks are expected, not errors).
        user_options: Provider options given by the caller per provider name.
    """

    chain: tuple[str, ...]
    explicit: bool
    user_options: tuple[tuple[str, dict[str, Any]], ...] = ()


def _unavailable(what: str, available: Sequence[str]) -> str:
    msg = f"{what} is not available; onnxruntime offers {list(available)}"
    if "CUDAExecutionProvider" not in available:
        msg += (
            ". For CUDA/TensorRT install onnxruntime-gpu alone: pip uninstall -y onnxruntime "
            'onnxruntime-gpu && pip install "ast-onnx[gpu]" (with both wheels installed '
            "only the CPU provider is offered)"
        )
    return msg


def _resolve_name(name: str) -> str:
    if name in PROVIDER_NAMES:
        return PROVIDER_NAMES[name]
    if name.endswith("ExecutionProvider"):
        return name
    raise ProviderError(
        f"unknown provider {name!r}: expected 'auto', one of {sorted(PROVIDER_NAMES)} "
        "or an onnxruntime provider name such as 'CUDAExecutionProvider'"
    )


def select_providers(
    providers: ProviderSpec, available: Sequence[str], fallback: bool = False
) -> ProviderPlan:
    """Turn a provider request into the chain to give onnxruntime.

    Args:
        providers: ``"auto"``, a short name (``"cpu"``, ``"cuda"``, ``"tensorrt"``) or a list
            of short/onnxruntime names or ``(name, options)`` pairs, best first.
        available: ``onnxruntime.get_available_providers()``.
        fallback: Skip requested providers that are unavailable (with a warning)
            instead of raising.

    Returns:
        A :class:`ProviderPlan`.

    Raises:
        ProviderError: Unknown name, or a requested provider is unavailable and
            ``fallback`` is False.
    """
    if isinstance(providers, str):
        if providers == "auto":
            best = next(s for s in AUTO_ORDER if PROVIDER_NAMES[s] in available or s == "cpu")
            chain = [PROVIDER_NAMES[s] for s in PROVIDER_CHAINS[best]]
            return ProviderPlan(tuple(p for p in chain if p in available) or tuple(chain), False)
        key = providers.lower()
        if key in PROVIDER_CHAINS:
            requested: list[tuple[str, dict[str, Any]]] = [
                (PROVIDER_NAMES[s], {}) for s in PROVIDER_CHAINS[key]
            ]
        else:
            requested = [(_resolve_name(providers), {})]
    else:
        requested = []
        for item in providers:
            name, opts = (item, {}) if isinstance(item, str) else (item[0], dict(item[1]))
            requested.append((_resolve_name(name), opts))
        if not requested:
            raise ProviderError("providers is an empty list: give at least one provider")

    kept = []
    for name, opts in requested:
        if name in available:
            kept.append((name, opts))
        elif not fallback:
            raise ProviderError(_unavailable(f"execution provider {name!r}", available))
        else:
            logger.warning("%s; falling back", _unavailable(f"provider {name!r}", available))
    if not kept:
        raise ProviderError(_unavailable(f"none of the providers {requested}", available))
    return ProviderPlan(tuple(n for n, _ in kept), True, tuple((n, o) for n, o in kept if o))


@dataclass(frozen=True)
class ProviderSettings:
    """What provider options are built from.

    Attributes:
        device_id: CUDA device for CUDA and TensorRT.
        input_name: Model input, for the TensorRT optimization profile.
        frame_shape: (frames, mel bins) of one input item; ``(samples,)`` for wave-in models.
        min_frame_shape: Smallest item shape of the TensorRT profile (None: ``frame_shape``).
        batch_size: Largest batch the runtime sends; the TensorRT profile covers 1..batch_size.
        fp16: Let TensorRT use fp16 kernels (set for models exported in fp16).
        cache_dir: TensorRT engine and timing cache directory (None: :func:`default_cache_dir`).
        gpu_mem_limit: CUDA arena limit in bytes (None: no limit).
    """

    device_id: int = 0
    input_name: str = INPUT_VALUES
    frame_shape: tuple[int, ...] = (1024, 128)
    min_frame_shape: tuple[int, ...] | None = None
    batch_size: int = 8
    fp16: bool = False
    cache_dir: str | os.PathLike[str] | None = None
    gpu_mem_limit: int | None = None


def _profile(name: str, batch: int, frame_shape: tuple[int, ...]) -> str:
    return f"{name}:" + "x".join(str(d) for d in (batch, *frame_shape))


def provider_options(
    provider: str, settings: ProviderSettings, ort_version: str = ""
) -> dict[str, Any]:
    """Default options for one provider (empty for CPU and unknown providers).

    TensorRT: fp16 when the model is fp16; engine + timing caches in ``cache_dir`` so the
    second start skips the engine build; an explicit optimization profile for batch
    1..batch_size, flagged with ``trt_engine_cache_built_with_explicit_profiles`` so the
    cached engine is reused (onnxruntime#16889; the option exists from onnxruntime 1.15).
    CUDA: device, ``kSameAsRequested`` arena growth, optional memory limit.
    """
    if provider == PROVIDER_NAMES["cuda"]:
        opts: dict[str, Any] = {
            "device_id": settings.device_id,
            "arena_extend_strategy": "kSameAsRequested",
        }
        if settings.gpu_mem_limit is not None:
            opts["gpu_mem_limit"] = int(settings.gpu_mem_limit)
        return opts
    if provider == PROVIDER_NAMES["tensorrt"]:
        cache = Path(settings.cache_dir) if settings.cache_dir else default_cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        name, shape = settings.input_name, settings.frame_shape
        opts = {
            "device_id": settings.device_id,
            "trt_fp16_enable": settings.fp16,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
            "trt_profile_min_shapes": _profile(name, 1, settings.min_frame_shape or shape),
            "trt_profile_opt_shapes": _profile(name, settings.batch_size, shape),
            "trt_profile_max_shapes": _profile(name, settings.batch_size, shape),
        }
        if _version_tuple(ort_version) >= (1, 15):
            opts["trt_engine_cache_built_with_explicit_profiles"] = True
        return opts
    return {}


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for p in version.split(".")[:2]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def build_provider_list(
    plan: ProviderPlan, settings: ProviderSettings, ort_version: str
) -> list[tuple[str, dict[str, Any]]]:
    """(name, options) pairs for ``InferenceSession(providers=...)``; caller options win."""
    user = dict(plan.user_options)
    return [
        (p, {**provider_options(p, settings, ort_version), **user.get(p, {})}) for p in plan.chain
    ]


def check_session_providers(
    plan: ProviderPlan, session_providers: Sequence[str], fallback: bool = False
) -> str:
    """Check the session got the provider that was asked for; return the one in use.

    Args:
        plan: What was asked.
        session_providers: ``session.get_providers()`` after creating the session.
        fallback: Accept a dropped provider with a warning instead of raising.

    Raises:
        ProviderError: onnxruntime dropped the wanted provider (it failed to load) and
            neither ``fallback`` was set nor ``"auto"`` was asked.
    """
    if not session_providers:
        raise ProviderError("onnxruntime created a session with no execution provider")
    wanted, got = plan.chain[0], session_providers[0]
    if wanted in session_providers:
        return wanted
    dropped = [p for p in plan.chain if p not in session_providers]
    msg = (
        f"onnxruntime could not load {dropped} (listed as available, but failing at session "
        f"creation, e.g. missing CUDA/cuDNN/TensorRT libraries); the session runs on "
        f"{list(session_providers)}. See the onnxruntime log above for the cause"
    )
    if plan.explicit and not fallback:
        raise ProviderError(msg + "; pass fallback=True to accept it")
    logger.warning("%s; falling back to %s", msg, got)
    return got
