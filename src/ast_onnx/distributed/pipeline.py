"""Ray Data batch tagging: files -> decode + features (CPU tasks) -> scores (actor pool).

    import ray
    from ast_onnx.distributed import RayOptions, classify_dataset, classify_to_file

    ray.init()                                            # or ray.init("auto"), "ray://..."
    summary = classify_to_file("model.onnx", ["s3://bucket/clips/"], "results.jsonl")

    ds = ray.data.from_items([{"path": "/data/a.wav"}, ...])  # or your own pipeline
    rows = classify_dataset(ds, "model.onnx", RayOptions(num_actors=4))  # lazy Dataset

The model file must be readable at the same path on every node (a shared or
copied filesystem); audio may be local paths (ditto) or URIs any node can read.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ast_onnx.distributed.files import list_audio_files
from ast_onnx.distributed.identity import model_fingerprint, run_identity
from ast_onnx.distributed.output import ResultWriter
from ast_onnx.distributed.stages import ModelSpec, Scorer, decode_batch
from ast_onnx.errors import InvalidOptionError, ModelError, ProviderError, require
from ast_onnx.runtime.embeddings import require_embedding
from ast_onnx.runtime.events import EventOptions, make_detector
from ast_onnx.runtime.options import DEFAULT_BATCH_SIZE, RuntimeOptions, check_int
from ast_onnx.runtime.providers import PROVIDER_CHAINS

logger = logging.getLogger(__name__)

_GPU_PROVIDERS = tuple(p for p in PROVIDER_CHAINS if p != "cpu")
#: Most blocks the file list is split into (bounds scheduling overhead for huge jobs).
MAX_BLOCKS = 2000


@dataclass(init=False)
class RayOptions:
    """How a batch-tagging job runs: the Ray resources, plus the actors' Runtime options.

    Args:
        runtime: The :class:`~ast_onnx.runtime.RuntimeOptions` of the actors' Runtime
            (the same object ``ast-classify`` builds from its flags).
        top_k: Labels (and scores) per row.
        num_actors: Scoring actors, each holding one Runtime (one model session).
        actor_cpus: CPUs reserved per actor; its onnxruntime threads default to this.
        num_gpus: GPUs per actor. None: 1 when the provider is ``"cuda"``/``"tensorrt"``,
            or ``"auto"`` on a cluster with GPUs; else 0 (CPU actors). Fractions share a GPU.
        events: Detect each file's sound events in the actors (an ``events`` list per
            row, as ``ast-classify --events``): True for the default rules, or
            :class:`~ast_onnx.runtime.events.EventOptions`; None: no events.
        embedding: Add each file's embedding vector to its row (``embedding``, float32
            [hidden]: the mean of its window vectors, from the same model runs as the
            scores). The model needs an ``embedding`` output (``ast-export --outputs
            logits,embedding``); a model with embeddings only gives empty labels/scores.
        decode_cpus: CPUs per decode/feature task. Keep it different from ``actor_cpus``
            (with no GPUs): equal resource requests let Ray Data fuse the decode stage
            into the actors, which then decode and score in turn.
        **runtime_overrides: RuntimeOptions fields applied over ``runtime``
            (``provider=`` is accepted for ``providers=``), e.g. ``RayOptions(prepack=False)``.

    ``batch_size`` (files per map batch, and windows per ``session.run`` in the actors; one
    for dynamic int8 models, as :class:`~ast_onnx.runtime.Runtime` does) is the runtime's
    ``batch_size``, default 8.
    """

    runtime: RuntimeOptions
    top_k: int
    num_actors: int
    actor_cpus: float
    num_gpus: float | None
    decode_cpus: float
    events: EventOptions | bool | None
    embedding: bool

    def __init__(
        self,
        runtime: RuntimeOptions | None = None,
        *,
        top_k: int = 5,
        num_actors: int = 1,
        actor_cpus: float = 1.0,
        num_gpus: float | None = None,
        decode_cpus: float = 0.5,
        events: EventOptions | bool | None = None,
        embedding: bool = False,
        **runtime_overrides: Any,
    ) -> None:
        if "provider" in runtime_overrides:
            runtime_overrides["providers"] = runtime_overrides.pop("provider")
        self.runtime = (runtime or RuntimeOptions()).replace(**runtime_overrides)
        self.top_k = top_k
        self.num_actors = num_actors
        self.actor_cpus = actor_cpus
        self.num_gpus = num_gpus
        self.decode_cpus = decode_cpus
        self.events = events
        self.embedding = embedding

    @property
    def batch_size(self) -> int:
        """Files per map batch and windows per model run (the runtime's, default 8)."""
        return self.runtime.batch_size or DEFAULT_BATCH_SIZE

    @property
    def provider(self) -> str:
        """The runtime's provider request (a short name on this path)."""
        return str(self.runtime.providers)

    def check(self) -> None:
        """Raise :class:`~ast_onnx.errors.InvalidOptionError` on an option out of range."""
        for name in ("top_k", "num_actors"):
            check_int(name, getattr(self, name), 1)
        for name in ("actor_cpus", "decode_cpus"):
            if not getattr(self, name) > 0:
                raise InvalidOptionError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.events is not None and not isinstance(self.events, bool | EventOptions):
            raise InvalidOptionError(
                f"events must be None, True, False or EventOptions, got {self.events!r}"
            )
        if not isinstance(self.embedding, bool):
            raise InvalidOptionError(f"embedding must be True or False, got {self.embedding!r}")
        if self.num_gpus is not None and not self.num_gpus >= 0:
            raise InvalidOptionError(f"num_gpus must be >= 0 or None, got {self.num_gpus!r}")
        if self.runtime.providers not in ("auto", *PROVIDER_CHAINS):
            raise InvalidOptionError(
                f"provider must be 'auto' or one of {list(PROVIDER_CHAINS)} on Ray, got "
                f"{self.runtime.providers!r}"
            )


@dataclass
class RunSummary:
    """What :func:`classify_to_file` did.

    Attributes:
        output: The results file.
        files: Audio files listed from the inputs.
        skipped: Files skipped because the output already had a successful row for them.
        classified: Rows written with labels by this run.
        failed: Error rows written by this run (bad files).
        seconds: Wall time of the run.
        problems: Inputs that gave no files (directories without audio).
    """

    output: Path
    files: int
    skipped: int = 0
    classified: int = 0
    failed: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


def import_ray():
    """``(ray, ray.data)``, or :class:`MissingDependencyError` naming the extra."""
    feature = "Ray Data batch tagging"
    return require("ray", "distributed", feature), require("ray.data", "distributed", feature)


def init_ray(address: str | None = None, num_cpus: int | None = None, **kwargs: Any) -> None:
    """Connect to a Ray cluster (``"auto"``, ``"ray://host:10001"``) or start a local one."""
    ray, _ = import_ray()
    kwargs.setdefault("include_dashboard", False)
    kwargs.setdefault("ignore_reinit_error", True)
    if num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    ray.init(address=address, **kwargs)


def model_spec(model: str | os.PathLike, options: RayOptions) -> ModelSpec:
    """Open the model once on the driver (CPU) to check it and read its frontend and windows."""
    from ast_onnx.runtime import Runtime
    from ast_onnx.runtime.loading import resolve_model_path

    path = os.path.abspath(os.fspath(resolve_model_path(model)))  # "demo": the bundled one
    # Never runs the model: CPU, one thread, no prepacking, the cheapest load.
    probe = Runtime(
        path, options.runtime, providers="cpu", threads=1, prepack=False, batch_size=None
    )
    # Event rules naming labels the model does not have fail here, before Ray starts.
    make_detector(options.events, probe.labels, probe.activation, probe.thresholds)
    if options.embedding:  # a model without the output fails here too
        require_embedding(probe.embedding_name, path)
    elif probe.metadata is not None and not probe.metadata.has_logits:
        raise ModelError(
            f"model {path!r} outputs embeddings only: it cannot classify; ask for its "
            "vectors with embedding=True (ast-classify --ray --embedding)"
        )
    # The probe took the model's default batch: 1 for dynamic int8 models, whose scores
    # would otherwise depend on batch peers. Actors keep that, as a plain Runtime does.
    batch = 1 if probe.batch_size == 1 else options.batch_size
    return ModelSpec(
        path=path,
        name=Path(path).name,
        frontend=probe.frontend.to_dict(),
        window_samples=probe.window_samples,
        hop_samples=probe.hop_samples,
        input_kind=getattr(probe, "input_kind", "features"),
        runtime=options.runtime.replace(batch_size=batch),
        fingerprint=model_fingerprint(path, probe.labels),
    )


def actor_gpus(options: RayOptions, cluster_gpus: float) -> float:
    """GPUs per scoring actor (see :attr:`RayOptions.num_gpus`)."""
    if options.num_gpus is not None:
        gpus = float(options.num_gpus)
    elif options.provider in _GPU_PROVIDERS or (options.provider == "auto" and cluster_gpus > 0):
        gpus = 1.0
    else:
        gpus = 0.0
    if gpus > 0 and cluster_gpus <= 0:
        raise ProviderError(
            f"provider {options.provider!r} with {gpus:g} GPU(s) per actor, but the Ray cluster "
            "has no GPUs: use provider='cpu' (--provider cpu) or a cluster with GPU nodes"
        )
    return gpus


def actor_spec(spec: ModelSpec, options: RayOptions, gpus: float) -> ModelSpec:
    """The spec the actors get: the job's Runtime options, placed on the actors' resources.

    ``"auto"`` becomes ``"cpu"`` on CPU actors; threads default to the actor's CPUs.
    Everything else of :attr:`RayOptions.runtime` reaches the actors' Runtime as it is.
    """
    provider = options.provider if gpus > 0 or options.provider != "auto" else "cpu"
    threads = options.runtime.threads or max(1, int(options.actor_cpus))
    return replace(spec, runtime=spec.runtime.replace(providers=provider, threads=threads))


def warn_if_starved(options: RayOptions, cluster_cpus: float) -> bool:
    """Warn when the actor pool leaves no CPU for one decode task; True if it does.

    The pool's actors hold their CPUs for the whole job, so with
    ``num_actors * actor_cpus + decode_cpus`` above the cluster's CPUs no decode task
    can ever run and the job waits without end (Ray Data gives up after
    ``execution_no_progress_timeout_s``, 30 min). A warning, not an error: an
    autoscaling cluster may still add the nodes.
    """
    need = options.num_actors * options.actor_cpus + options.decode_cpus
    if need <= cluster_cpus:
        return False
    logger.warning(
        "%d scoring actor(s) x %g CPU + %g CPU for a decode task = %g CPUs, but the Ray "
        "cluster has %g: no file can be decoded until more CPUs join; lower num_actors "
        "(--num-actors) or actor_cpus (--actor-cpus)",
        options.num_actors,
        options.actor_cpus,
        options.decode_cpus,
        need,
        cluster_cpus,
    )
    return True


def classify_dataset(
    ds: Any,
    model: str | os.PathLike | ModelSpec,
    options: RayOptions | None = None,
    *,
    filesystem: Any = None,
) -> Any:
    """Add the tagging stages to a Ray Dataset; returns a lazy Dataset of result rows.

    Args:
        ds: A ``ray.data.Dataset`` with a string column ``path`` (absolute local paths
            or URIs; other columns are not carried over: join results back by path).
        model: The ``.onnx`` file (or a :class:`ModelSpec` from :func:`model_spec`).
        options: :class:`RayOptions` (defaults if None).
        filesystem: A ``pyarrow.fs.FileSystem`` the paths belong to (None: local or URIs).

    Returns:
        A Dataset with one row per input row: ``path``, ``duration`` (seconds),
        ``labels`` and ``scores`` (top-k, best first), ``model`` (file name), ``error``
        (None, or why the file could not be classified), ``events`` (with
        ``options.events``: the file's events as ``Event.to_dict()``; else None),
        ``embedding`` (with ``options.embedding``: the file's vector; else None).
    """
    ray, data = import_ray()
    options = options or RayOptions()
    options.check()
    spec = model if isinstance(model, ModelSpec) else model_spec(model, options)
    if not ray.is_initialized():
        init_ray()
    resources = ray.cluster_resources()
    gpus = actor_gpus(options, resources.get("GPU", 0))
    warn_if_starved(options, resources.get("CPU", 0))
    spec = actor_spec(spec, options, gpus)
    ds = ds.map_batches(
        decode_batch,
        batch_size=options.batch_size,
        batch_format="numpy",
        fn_kwargs={"spec": spec, "filesystem": filesystem},
        num_cpus=options.decode_cpus,
    )
    # compute=ActorPoolStrategy(size=N) is accepted by Ray 2.9 through 2.6x (concurrency=N
    # was the preferred spelling for a while and is deprecated again in 2.5x+).
    return ds.map_batches(
        Scorer,
        batch_size=options.batch_size,
        batch_format="pyarrow",
        fn_constructor_kwargs={
            "spec": spec,
            "top_k": options.top_k,
            "events": options.events,
            "embedding": options.embedding,
        },
        compute=data.ActorPoolStrategy(size=options.num_actors),
        num_cpus=options.actor_cpus,
        num_gpus=gpus,
        # No max_restarts/max_task_retries here: Ray Data gives pool actors
        # max_restarts=-1 and max_task_retries=-1 by default (a dead actor is restarted
        # and its unfinished batches retried whole, so no row is lost or duplicated:
        # tests/integrations/distributed/test_ray_faults.py), and Ray 2.60 deprecates
        # passing them (ray_remote_args).
    )


def classify_to_file(
    model: str | os.PathLike | ModelSpec,
    inputs: Iterable[str | os.PathLike],
    output: str | os.PathLike,
    options: RayOptions | None = None,
    *,
    resume: bool = True,
    filesystem: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> RunSummary:
    """List audio files, tag them on Ray, and write one row per file to ``output``.

    Rows are flushed to the output as batches finish (in completion order, not input
    order). With ``resume``, files that already have a successful row in ``output`` are
    skipped and files with an error row are tried again; an output written by another
    model or other row-shaping options is refused (:class:`~ast_onnx.errors.ResumeError`,
    see :mod:`ast_onnx.distributed.output`).

    Args:
        model: The ``.onnx`` file (or a :class:`ModelSpec` from :func:`model_spec`).
        inputs: Files and directories (walked recursively), local or URIs.
        output: ``results.jsonl`` or ``results.parquet``.
        options: :class:`RayOptions`.
        resume: Keep and skip what ``output`` already holds (False: start over).
        filesystem: A ``pyarrow.fs.FileSystem`` the inputs belong to.
        progress: Called as ``progress(rows_done, rows_total)`` after every batch
            written (this run's rows).

    Returns:
        A :class:`RunSummary`.
    """
    start = time.perf_counter()
    options = options or RayOptions()
    options.check()
    # A bad model fails before any file is touched.
    spec = model if isinstance(model, ModelSpec) else model_spec(model, options)
    files, problems = list_audio_files(inputs, filesystem)
    identity = run_identity(spec, options.top_k, options.events, options.embedding)
    writer = ResultWriter(output, resume=resume, identity=identity)
    todo = [f for f in files if f not in writer.done]
    summary = RunSummary(Path(output), len(files), len(files) - len(todo), problems=problems)
    try:
        if todo:
            _, data = import_ray()
            blocks = min(MAX_BLOCKS, math.ceil(len(todo) / options.batch_size))
            ds = data.from_items([{"path": p} for p in todo], override_num_blocks=blocks)
            rows = classify_dataset(ds, spec, options, filesystem=filesystem)
            for batch in rows.iter_batches(batch_size=None, batch_format="pyarrow"):
                chunk = batch.to_pylist()
                writer.write(chunk)
                bad = sum(r["error"] is not None for r in chunk)
                summary.failed += bad
                summary.classified += len(chunk) - bad
                if progress is not None:
                    progress(writer.written, len(todo))
    except BaseException:
        writer.abort()
        raise
    writer.close()
    summary.seconds = time.perf_counter() - start
    logger.info("%s", summary)
    return summary
