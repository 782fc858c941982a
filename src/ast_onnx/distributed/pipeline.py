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
from ast_onnx.errors import MissingDependencyError, ProviderError

logger = logging.getLogger(__name__)

_GPU_PROVIDERS = ("cuda", "tensorrt")
#: Most blocks the file list is split into (bounds scheduling overhead for huge jobs).
MAX_BLOCKS = 2000


@dataclass
class RayOptions:
    """How a batch-tagging job runs.

    Attributes:
        top_k: Labels (and scores) per row.
        batch_size: Files per map batch, and windows per ``session.run`` in the actors
            (one for dynamic int8 models, as :class:`~ast_onnx.runtime.Runtime` does).
        num_actors: Scoring actors, each holding one Runtime (one model session).
        actor_cpus: CPUs reserved per actor; its onnxruntime threads default to this.
        num_gpus: GPUs per actor. None: 1 when ``provider`` is ``"cuda"``/``"tensorrt"``,
            or ``"auto"`` on a cluster with GPUs; else 0 (CPU actors). Fractions share a GPU.
        decode_cpus: CPUs per decode/feature task. Keep it different from ``actor_cpus``
            (with no GPUs): equal resource requests let Ray Data fuse the decode stage
            into the actors, which then decode and score in turn.
        provider: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"tensorrt"`` (Runtime's ``providers``).
        threads: onnxruntime intra-op threads per actor (None: ``actor_cpus``, at least 1).
        labels: Labels file for models without ast-onnx metadata.
        window_hop: Seconds between windows of long audio (Runtime's default if None).
        aggregate: ``"mean"`` or ``"max"`` over windows.
        fallback: Let actors fall back to CPU if their GPU provider fails.
        prepack: onnxruntime weight prepacking in the actors (Runtime's ``prepack``).
            ``False`` with an ``--external-data`` model lets the actors on one node share
            the memory-mapped weights instead of holding a packed copy each.
    """

    top_k: int = 5
    batch_size: int = 8
    num_actors: int = 1
    actor_cpus: float = 1.0
    num_gpus: float | None = None
    decode_cpus: float = 0.5
    provider: str = "auto"
    threads: int | None = None
    labels: str | None = None
    window_hop: float | None = None
    aggregate: str = "mean"
    fallback: bool = False
    prepack: bool = True

    def check(self) -> None:
        """Raise ValueError on an option out of range."""
        for name in ("top_k", "batch_size", "num_actors"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("actor_cpus", "decode_cpus"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.num_gpus is not None and not self.num_gpus >= 0:
            raise ValueError(f"num_gpus must be >= 0 or None, got {self.num_gpus!r}")
        if self.provider not in ("auto", "cpu", *_GPU_PROVIDERS):
            raise ValueError(
                f"provider must be 'auto', 'cpu', 'cuda' or 'tensorrt', got {self.provider!r}"
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
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise MissingDependencyError(
            "Ray Data batch tagging requires ray[data] and pyarrow: "
            'pip install "ast-onnx[distributed]"'
        ) from e
    return ray, ray.data


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

    path = os.path.abspath(os.fspath(model))
    common = {
        "labels": options.labels,
        "window_hop": options.window_hop,
        "aggregate": options.aggregate,
        "prepack": options.prepack,
    }
    # Never runs the model: no prepacking, the cheapest load.
    probe = Runtime(path, providers="cpu", threads=1, **{**common, "prepack": False})
    # The probe took the model's default batch: 1 for dynamic int8 models, whose scores
    # would otherwise depend on batch peers. Actors keep that, as a plain Runtime does.
    common["batch_size"] = 1 if probe.batch_size == 1 else options.batch_size
    return ModelSpec(
        path=path,
        name=Path(path).name,
        frontend=probe.frontend.to_dict(),
        window_samples=probe.window_samples,
        hop_samples=probe.hop_samples,
        input_kind=getattr(probe, "input_kind", "features"),
        runtime_kwargs=common,
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
        (None, or why the file could not be classified).
    """
    ray, data = import_ray()
    options = options or RayOptions()
    options.check()
    spec = model if isinstance(model, ModelSpec) else model_spec(model, options)
    if not ray.is_initialized():
        init_ray()
    gpus = actor_gpus(options, ray.cluster_resources().get("GPU", 0))
    provider = options.provider if gpus > 0 or options.provider != "auto" else "cpu"
    threads = options.threads or max(1, int(options.actor_cpus))
    runtime_kwargs = {
        **spec.runtime_kwargs,
        "providers": provider,
        "threads": threads,
        "fallback": options.fallback,
    }
    spec = replace(spec, runtime_kwargs=runtime_kwargs)
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
        fn_constructor_kwargs={"spec": spec, "top_k": options.top_k},
        compute=data.ActorPoolStrategy(size=options.num_actors),
        num_cpus=options.actor_cpus,
        num_gpus=gpus,
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
    writer = ResultWriter(output, resume=resume, identity=run_identity(spec, options.top_k))
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
