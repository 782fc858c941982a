"""The two stages of Ray Data batch tagging, as plain code that runs without Ray.

1. :func:`decode_batch` (CPU tasks): read each file, resample to the model's rate,
   cut it into the runtime's windows (:func:`~ast_onnx.runtime.windows.plan_windows`)
   and compute each window's features with the model's own frontend.
2. :class:`Scorer` (actor pool): one :class:`~ast_onnx.runtime.Runtime` per actor
   runs the windows and scores each file's window logits with the scoring step of
   :meth:`Runtime.classify` (:class:`~ast_onnx.runtime.scoring.WindowScorer`), and
   returns one result row per file.

Wave-in models (``input_kind == "waveform"``) compute the fbank inside the graph, so
the CPU stage only decodes and resamples, and the actors run
:meth:`Runtime.classify` on the waves (the same windows and aggregation).

With ``embedding``, the actors also return each file's embedding vector (the model's
``embedding`` output, the mean of its window vectors as
:func:`~ast_onnx.runtime.embeddings.clip_vector` computes it for :meth:`Runtime.embed`),
from the same model runs as the scores. A model with embeddings only (a bare
``ASTModel`` export) gives empty labels and scores.

Whatever goes wrong with one file (unreadable, not a regular file, NaN samples, a
MemoryError, a model run that fails or gives NaN scores) becomes that file's row,
with ``error`` saying why; the other files of its batch go on. When a batched model
run fails, the batch's files are scored one by one to find the culprit.
Batches travel as ``pyarrow.Table`` (features as raw float32 bytes, so no Ray tensor
extension type is involved and any Ray version moves them the same way).
"""

from __future__ import annotations

import io
import logging
import os
import sys
import warnings
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ast_onnx.errors import AstOnnxError, ModelError, require
from ast_onnx.frontend import FeatureExtractor, prepare_audio
from ast_onnx.metadata import InputKind
from ast_onnx.runtime.embeddings import clip_vector, require_embedding
from ast_onnx.runtime.events import EventOptions
from ast_onnx.runtime.options import RuntimeOptions
from ast_onnx.runtime.results import Classification
from ast_onnx.runtime.waveform import check_wave_length
from ast_onnx.runtime.windows import plan_windows, split_windows

logger = logging.getLogger(__name__)

#: Columns of a result row, in order. ``events``: the file's sound events
#: (:meth:`~ast_onnx.runtime.events.Event.to_dict` each) when the job detects them, else None.
#: ``embedding``: the file's embedding vector (float32 [hidden]) when the job asks for it,
#: else None.
RESULT_COLUMNS: tuple[str, ...] = (
    "path",
    "duration",
    "labels",
    "scores",
    "model",
    "error",
    "events",
    "embedding",
)


def import_pyarrow():
    """``pyarrow`` or :class:`~ast_onnx.errors.MissingDependencyError` naming the extra."""
    return require("pyarrow", "distributed", "Ray Data batch tagging")


def result_schema():
    """Arrow schema of result rows (the parquet output's schema too)."""
    pa = import_pyarrow()
    return pa.schema(
        [
            ("path", pa.string()),
            ("duration", pa.float64()),
            ("labels", pa.list_(pa.string())),
            ("scores", pa.list_(pa.float32())),
            ("model", pa.string()),
            ("error", pa.string()),
            ("events", pa.list_(_event_type(pa))),
            ("embedding", pa.list_(pa.float32())),
        ]
    )


def _event_type(pa: Any) -> Any:
    """Arrow struct of one event, the fields and types of ``Event.to_dict()``."""
    return pa.struct(
        [
            ("label", pa.string()),
            ("index", pa.int64()),
            ("onset", pa.float64()),
            ("offset", pa.float64()),
            ("peak_score", pa.float64()),
            ("mean_score", pa.float64()),
        ]
    )


def _feature_schema():
    pa = import_pyarrow()
    return pa.schema(
        [
            ("path", pa.string()),
            ("num_samples", pa.int64()),
            ("num_windows", pa.int32()),
            ("data", pa.large_binary()),
            ("error", pa.string()),
        ]
    )


@dataclass(frozen=True)
class ModelSpec:
    """What the stages need to know about the model: small and picklable.

    Attributes:
        path: The ``.onnx`` file (absolute: workers may run in another directory).
        name: Model name written into every row (the file name).
        frontend: ``FeatureExtractor.to_dict()`` of the model (from its metadata).
        window_samples: Samples per window (the runtime's ``window_samples``).
        hop_samples: Samples between windows of long audio (the runtime's ``hop_samples``).
        input_kind: ``"features"``, or ``"waveform"`` for wave-in models.
        runtime: The :class:`~ast_onnx.runtime.RuntimeOptions` of the actors' Runtime.
        fingerprint: sha256 of the model's bytes and labels
            (:func:`~ast_onnx.distributed.identity.model_fingerprint`), recorded in
            results files so that a resume never mixes two models' rows.
    """

    path: str
    name: str
    frontend: dict[str, Any]
    window_samples: int
    hop_samples: int
    input_kind: InputKind = "features"
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    fingerprint: str | None = None

    @property
    def runtime_kwargs(self) -> dict[str, Any]:
        """The actors' Runtime options as keyword arguments."""
        return {f.name: getattr(self.runtime, f.name) for f in fields(self.runtime)}

    @property
    def sample_rate(self) -> int:
        return int(self.frontend.get("sample_rate", 16000))


def describe_error(error: BaseException, path: str) -> str:
    """One line for an error row: the package's message, else the exception type too."""
    text = str(error) if isinstance(error, AstOnnxError) else f"{type(error).__name__}: {error}"
    return text if path in text else f"{path}: {text}"


def read_wave(
    path: str, sample_rate: int, filesystem: Any = None, max_seconds: float | None = None
) -> np.ndarray:
    """Decode one file to float32 mono at ``sample_rate``, within the frontend's limits.

    Local paths are read directly (regular files only: the frontend refuses FIFOs and
    devices before opening them); URIs (``s3://``, ``gs://``, ``file://``, ...) and
    paths of an explicit ``pyarrow.fs.FileSystem`` are fetched as bytes first.
    """
    if filesystem is None and "://" not in path:
        return prepare_audio(path, None, sample_rate, max_seconds)
    if filesystem is None:
        fs_module = require("pyarrow.fs", "distributed", "reading audio from URIs")
        filesystem, path_in_fs = fs_module.FileSystem.from_uri(path)
    else:
        path_in_fs = path
    with filesystem.open_input_stream(path_in_fs) as stream:
        data = stream.read()
    return prepare_audio(io.BytesIO(data), None, sample_rate, max_seconds)


def decode_batch(batch: dict[str, np.ndarray], spec: ModelSpec, filesystem: Any = None) -> Any:
    """CPU stage: paths -> per-file window features (a ``pyarrow.Table``).

    Args:
        batch: Ray Data numpy batch with a ``path`` column.
        spec: The model's :class:`ModelSpec`.
        filesystem: Optional ``pyarrow.fs.FileSystem`` the paths belong to.

    Returns:
        Columns ``path``, ``num_samples``, ``num_windows``, ``data`` (float32 bytes of
        the features ``[num_windows, frames, mel]``; for wave-in models, of the wave)
        and ``error`` (None, or why the file failed).
    """
    pa = import_pyarrow()
    frontend = FeatureExtractor.from_dict(spec.frontend)
    cols: dict[str, list] = {k: [] for k in _feature_schema().names}
    for path in (str(p) for p in batch["path"]):
        try:
            wave = read_wave(path, spec.sample_rate, filesystem, spec.runtime.max_audio_seconds)
            check_wave_length(wave, frontend.options.window_size, spec.sample_rate, path)
            plan = plan_windows(len(wave), spec.window_samples, spec.hop_samples)
            if spec.input_kind == "waveform":
                data = wave  # the graph computes the features
            else:
                data = frontend(split_windows(wave, plan)).input_values
            row: tuple[int | None, int, bytes, str | None] = (
                len(wave),
                len(plan),
                np.ascontiguousarray(data, np.float32).tobytes(),
                None,
            )
        except Exception as e:  # any failure is this file's error row, never the job's
            row = (None, 0, b"", describe_error(e, path))
            logger.info("decode failed: %s", row[-1])
        cols["path"].append(path)
        for key, value in zip(("num_samples", "num_windows", "data", "error"), row, strict=True):
            cols[key].append(value)
    return pa.Table.from_pydict(cols, schema=_feature_schema())


def _actor_restarted() -> bool:
    """Whether this process is a Ray actor that Ray restarted after its process died.

    False outside Ray (the stages run as plain code too; Ray is never imported here).
    """
    ray = sys.modules.get("ray")
    if ray is None:
        return False
    try:
        with warnings.catch_warnings():  # Ray 2.60 warns about the property's own internals
            warnings.simplefilter("ignore", DeprecationWarning)
            return bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception:  # not in an actor, or a Ray without the attribute
        return False


#: What the actor keeps of one file: its Classification (None for a model with
#: embeddings only) and its clip vector (None unless the job asks for embeddings).
_Output = tuple[Classification | None, np.ndarray | None]


class Scorer:
    """Actor stage: holds one :class:`~ast_onnx.runtime.Runtime`, scores feature batches.

    Args:
        spec: The model's :class:`ModelSpec` (its ``runtime`` options build the Runtime).
        top_k: Labels per row.
        events: Detect each file's sound events from its window scores, as
            ``Runtime.classify(..., events=...)`` does (True: default rules, or
            :class:`~ast_onnx.runtime.events.EventOptions`); None/False: no ``events``.
        embedding: Fill each row's ``embedding`` (the model needs an embedding output).
    """

    def __init__(
        self,
        spec: ModelSpec,
        top_k: int = 5,
        events: EventOptions | bool | None = None,
        embedding: bool = False,
    ) -> None:
        from ast_onnx.runtime import Runtime

        self.spec = spec
        self.top_k = top_k
        self.embedding = embedding
        self.runtime = Runtime(spec.path, spec.runtime)
        if embedding:
            require_embedding(self.runtime.embedding_name, spec.path)
        self._events = events
        self._scorer = self.runtime.scorer(top_k=top_k, events=events, keep_windows=False)
        if (self.runtime.window_samples, self.runtime.hop_samples) != (
            spec.window_samples,
            spec.hop_samples,
        ):
            raise ModelError(
                f"model {spec.path!r} on this worker windows audio by "
                f"{self.runtime.window_samples}/{self.runtime.hop_samples} samples, the driver "
                f"planned {spec.window_samples}/{spec.hop_samples}: is the file the same?"
            )
        fe = self.runtime.frontend
        self._shape = (fe.max_length, fe.num_mel_bins)
        if _actor_restarted():
            logger.warning(
                "scoring actor restarted (pid %d): its previous process died; Ray retries the "
                "batches it had not finished",
                os.getpid(),
            )
        logger.info("scorer ready: %r", self.runtime)

    def __call__(self, batch: Any) -> Any:
        """Score a ``pyarrow.Table`` from :func:`decode_batch`; returns result rows."""
        pa = import_pyarrow()
        paths = batch.column("path").to_pylist()
        errors = batch.column("error").to_pylist()
        samples = batch.column("num_samples").to_pylist()
        blobs = batch.column("data").to_pylist()
        inputs = {}
        for i in (i for i, e in enumerate(errors) if e is None):
            try:
                inputs[i] = self._unpack(blobs[i])
            except Exception as e:  # a malformed blob is this row's error
                errors[i] = describe_error(e, paths[i])
        run = self._classify_one if self.spec.input_kind == "waveform" else self._score_one
        jobs = {i: (x, samples[i]) for i, x in inputs.items()}
        results = self._run_batch(run, paths, jobs, errors)
        rows: dict[str, list] = {k: [] for k in RESULT_COLUMNS}
        rate = self.spec.sample_rate
        for i, path in enumerate(paths):
            best: list[Any] = []
            events: list[Any] | None = None
            vector: Any = None
            if errors[i] is None:
                result, clip = results[i]
                if result is not None:  # None: a model with embeddings only
                    best = result.labels
                    if self._scorer.detector is not None:
                        events = [e.to_dict() for e in result.events]
                if clip is not None:
                    vector = clip.tolist()
            ok = errors[i] is None
            rows["path"].append(path)
            rows["duration"].append(samples[i] / rate if ok else None)
            rows["labels"].append([p.label for p in best])
            rows["scores"].append([p.score for p in best])
            rows["model"].append(self.spec.name)
            rows["error"].append(errors[i])
            rows["events"].append(events if ok else None)
            rows["embedding"].append(vector if ok else None)
        return pa.Table.from_pydict(rows, schema=result_schema())

    def _summarize(self, logits: np.ndarray, num_samples: int) -> Classification:
        """A file's Classification from its window logits (the runtime's scoring step)."""
        plan = plan_windows(num_samples, self.spec.window_samples, self.spec.hop_samples)
        scorer = self._scorer
        scorer.reset()
        scorer.add(logits, plan.starts, num_samples)
        result = scorer.result(num_samples)
        if isinstance(result, AstOnnxError):
            raise result
        return result

    def _unpack(self, blob: bytes) -> np.ndarray:
        data = np.frombuffer(blob, np.float32)
        if self.spec.input_kind == "waveform":
            return data
        return data.reshape(-1, *self._shape)

    def _classify_one(self, items: list[tuple[np.ndarray, int]]) -> list[_Output]:
        """Wave-in models: :meth:`Runtime.classify` windows and scores the waves."""
        waves = [w for w, _ in items]
        results = self.runtime.classify(
            waves,
            sample_rate=self.runtime.sample_rate,  # decoded at the model's rate
            top_k=self.top_k,
            events=self._events or False,
            embedding=self.embedding,
        )
        return [(r, r.embedding) for r in results]

    def _score_one(self, items: list[tuple[np.ndarray, int]]) -> list[_Output]:
        """Feature windows of each item -> its Classification and, with ``embedding``,
        its clip vector (one model run for all)."""
        x = np.concatenate([x for x, _ in items])
        if self.embedding:
            logits, vectors = self.runtime.logits_and_embeddings(x)
        else:
            logits, vectors = self.runtime.logits(x), None
        out: list[_Output] = []
        offset = 0
        for x, num_samples in items:
            part = slice(offset, offset + len(x))
            result = None if logits is None else self._summarize(logits[part], num_samples)
            out.append((result, None if vectors is None else clip_vector(vectors[part])))
            offset += len(x)
        return out

    def _run_batch(
        self,
        run: Any,
        paths: list[str],
        inputs: dict[int, Any],
        errors: list[str | None],
    ) -> dict[int, _Output]:
        """Results per good row; any failure is narrowed down to the rows that cause it.

        The whole batch is tried at once; if that raises (anything: a model run that
        fails, a MemoryError), each row is tried alone and a row that still fails gets
        the error. Non-finite model outputs raise in the Runtime
        (:class:`~ast_onnx.errors.ModelOutputError`), so they are narrowed down the same way.
        """
        if not inputs:
            return {}
        try:
            scores = dict(zip(inputs, run(list(inputs.values())), strict=True))
        except Exception as e:
            logger.info("batch of %d failed (%s): scoring its files one by one", len(inputs), e)
            scores = {}
            for i, x in inputs.items():
                try:
                    scores[i] = run([x])[0]
                except Exception as e1:
                    errors[i] = describe_error(e1, paths[i])
        return scores
