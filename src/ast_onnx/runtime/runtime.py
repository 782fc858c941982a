"""The :class:`Runtime`: an AST ONNX model, its frontend and its labels, behind one object.

Needs numpy, scipy, soundfile and onnxruntime only. One Runtime can be shared by
threads: it keeps no per-call state, and ``InferenceSession.run`` is thread-safe.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from ast_onnx.errors import AstOnnxError, InvalidAudioError, InvalidOptionError
from ast_onnx.frontend import prepare_audio
from ast_onnx.metadata import ACTIVATIONS, ModelMetadata
from ast_onnx.runtime.events import EventOptions, make_detector, window_events
from ast_onnx.runtime.providers import (
    PROVIDER_NAMES,
    ProviderSettings,
    build_provider_list,
    check_session_providers,
    import_onnxruntime,
    select_providers,
    short_name,
)
from ast_onnx.runtime.results import Classification, WindowScore, activate, top_k
from ast_onnx.runtime.session import (
    create_session,
    inspect_io,
    make_frontend,
    probe_trt_settings,
    read_metadata,
    resolve_labels,
)
from ast_onnx.runtime.stream import Stream
from ast_onnx.runtime.waveform import check_waveform_batch, run_grouped
from ast_onnx.runtime.windows import AGGREGATIONS, aggregate, plan_windows

logger = logging.getLogger(__name__)

Audio = str | os.PathLike | np.ndarray


#: Items per ``session.run`` unless the model or the caller says otherwise.
DEFAULT_BATCH_SIZE = 8


def default_batch_size(metadata: ModelMetadata | None) -> int:
    """1 for dynamic int8 models (batch-invariant scores), else :data:`DEFAULT_BATCH_SIZE`."""
    return (
        1 if metadata is not None and metadata.precision == "int8-dynamic" else DEFAULT_BATCH_SIZE
    )


def _is_single(audio: Any) -> bool:
    return not isinstance(audio, (list, tuple))


class Runtime:
    """Classify audio with an AST model exported to ONNX.

    Args:
        path: The ``.onnx`` file.
        providers: ``"auto"`` (TensorRT, else CUDA, else CPU: whatever onnxruntime offers),
            ``"cpu"``, ``"cuda"``, ``"tensorrt"``, or a list of provider names or
            ``(name, options)`` pairs, best first.
        device_id: CUDA device for CUDA/TensorRT.
        threads: Intra-op threads of the session (None: onnxruntime's default, one per
            physical core).
        fallback: Accept a requested provider being unavailable or failing to load, with a
            warning, instead of raising :class:`~ast_onnx.errors.ProviderError`.
        labels: Class names (list, or a .txt file with one per line, or a .json list /
            ``id2label`` file). Required in practice for models without ast-onnx metadata;
            overrides the metadata's labels otherwise.
        activation: ``"sigmoid"`` or ``"softmax"``; None takes the model's metadata, and
            ``"sigmoid"`` for models without it (AST's AudioSet models are multi-label;
            pass ``"softmax"`` for single-label ones such as Speech Commands).
        batch_size: Most items (inputs or windows of long inputs) per ``session.run``,
            and the largest batch of the TensorRT optimization profile. None (default):
            8, or 1 for dynamic int8 models: they quantize activations with one scale
            over the whole batch, so batching would make an item's scores depend on its
            batch peers (and on CPU it is not faster: 5.6 s for 8 AST-base clips one by
            one vs 5.8 s as one batch, 2 cores). The TensorRT profile then covers 1-8.
        cache_dir: TensorRT engine/timing cache directory (default ``~/.cache/ast-onnx/trt``).
        window_hop: Seconds between windows of inputs longer than the model's window
            (default: half a window, rounded down to whole frames: 5.12 s for AST).
        aggregate: How window scores become the input's scores: ``"mean"`` (default:
            the average over the recording; still a distribution for softmax models) or
            ``"max"`` (a label is as strong as its best window; finds short events).
        gpu_mem_limit: CUDA memory arena limit in bytes.
        provider_options: Extra options per provider name, merged over the defaults.
        prepack: Let onnxruntime repack the MatMul weights for its CPU kernels at load
            (its default). ``False`` starts faster and skips that copy of the weights:
            in a fresh process AST-base fp32 loads in 0.45 s instead of 0.6 s (2 CPU
            cores), and in 0.01 s from an ``--external-data`` export, whose weights then
            stay memory-mapped and shared between processes. Inference is 1-10 % slower
            (more for int8 and batches), so it suits short-lived processes (one CLI
            call, serverless); keep the default for servers.

    Raises:
        ModelError: Missing/corrupt file, or a model that does not look like AST.
        ProviderError: A requested provider is unavailable or failed to load.
        MissingDependencyError: onnxruntime is not installed.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        providers: str | Sequence[Any] = "auto",
        device_id: int = 0,
        threads: int | None = None,
        fallback: bool = False,
        labels: Sequence[str] | str | os.PathLike | None = None,
        activation: str | None = None,
        batch_size: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        window_hop: float | None = None,
        aggregate: str = "mean",
        gpu_mem_limit: int | None = None,
        provider_options: dict[str, dict[str, Any]] | None = None,
        prepack: bool = True,
    ) -> None:
        if batch_size is not None:
            _check_int("batch_size", batch_size, 1)
        _check_int("device_id", device_id, 0)
        if threads is not None:
            _check_int("threads", threads, 1)
        if aggregate not in AGGREGATIONS:
            raise InvalidOptionError(f"aggregate must be one of {AGGREGATIONS}, got {aggregate!r}")
        if activation is not None and activation not in ACTIVATIONS:
            raise InvalidOptionError(
                f"activation must be one of {ACTIVATIONS} or None, got {activation!r}"
            )
        ort = import_onnxruntime()
        self.path = str(path)
        self.aggregate = aggregate

        plan = select_providers(providers, ort.get_available_providers(), fallback)
        if provider_options:
            extra = {PROVIDER_NAMES.get(k, k): v for k, v in provider_options.items()}
            merged = {**dict(plan.user_options), **extra}
            plan = type(plan)(plan.chain, plan.explicit, tuple(merged.items()))
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        if not prepack:
            options.add_session_config_entry("session.disable_prepacking", "1")
        settings = ProviderSettings(
            device_id=device_id,
            batch_size=batch_size or DEFAULT_BATCH_SIZE,
            cache_dir=cache_dir,
            gpu_mem_limit=gpu_mem_limit,
        )
        if PROVIDER_NAMES["tensorrt"] in plan.chain:
            settings = probe_trt_settings(ort, path, settings)
        chain = build_provider_list(plan, settings, ort.__version__)
        session = create_session(ort, path, options, chain, fallback=fallback or not plan.explicit)
        self.provider = short_name(
            check_session_providers(plan, session.get_providers(), fallback=fallback)
        )
        self._session = session
        self.metadata: ModelMetadata | None = read_metadata(session, path)
        #: Most items per ``session.run`` (see ``batch_size`` above).
        self.batch_size = batch_size or default_batch_size(self.metadata)
        self._io = inspect_io(session, path, self.metadata)
        self.frontend = make_frontend(self.metadata, self._io, path)
        #: ``"features"``, or ``"waveform"`` for wave-in models (fbank inside the graph).
        self.input_kind = self._io.input_kind
        self.labels = resolve_labels(labels, self.metadata, self._io, path)
        self.activation = activation or (self.metadata.activation if self.metadata else "sigmoid")
        if self.metadata is None:
            logger.warning(
                "model %r has no ast-onnx metadata: using the AST default frontend "
                "(%d frames x %d mel, 16 kHz), %d %s labels and %s activation",
                self.path,
                self.frontend.max_length,
                self.frontend.num_mel_bins,
                len(self.labels),
                "caller's" if labels is not None else "generic",
                self.activation,
            )
        self.window_samples = int(self.frontend.window_samples)
        self.hop_samples = self._hop_samples(window_hop)
        logger.info("loaded %s on %s (%s)", self.path, self.provider, session.get_providers())

    # ----- construction helpers -----

    def _hop_samples(self, window_hop: float | None) -> int:
        fe = self.frontend
        if window_hop is None:  # half a window, in whole frames (81,920 samples = 5.12 s)
            return max(1, fe.max_length // 2) * fe.hop_samples
        hop = round(float(window_hop) * fe.sample_rate)
        if not 0 < hop <= self.window_samples:
            raise InvalidOptionError(
                f"window_hop must be in (0, {self.window_samples / fe.sample_rate:.3f}] seconds "
                f"(one model window), got {window_hop!r}"
            )
        return hop

    # ----- properties -----

    @property
    def sample_rate(self) -> int:
        """Sample rate the model expects; other rates are resampled (logged)."""
        return int(self.frontend.sample_rate)

    @property
    def window_seconds(self) -> float:
        """Audio the model sees at once, in seconds."""
        return self.window_samples / self.sample_rate

    @property
    def providers(self) -> list[str]:
        """onnxruntime providers of the session, in priority order."""
        return list(self._session.get_providers())

    def __repr__(self) -> str:
        return (
            f"Runtime({self.path!r}, provider={self.provider!r}, labels={len(self.labels)}, "
            f"activation={self.activation!r})"
        )

    # ----- lower-level calls -----

    def features(
        self, audio: Audio | Sequence[Audio], sample_rate: int | None = None
    ) -> np.ndarray:
        """Model input for audio: float32 [batch, frames, mel] (padded or cut to one window).

        Longer audio is cut to the first window here (with a warning); :meth:`classify`
        windows it instead.
        """
        items = [audio] if _is_single(audio) else list(audio)
        waves = [prepare_audio(a, sample_rate, self.sample_rate) for a in items]
        feats = self.frontend(waves)
        if np.any(feats.truncated):
            logger.warning(
                "features(): %d input(s) longer than the model's %.2f s window were cut to it; "
                "classify() scores every window instead",
                int(np.sum(feats.truncated)),
                self.window_seconds,
            )
        return feats.input_values

    def logits(self, input_values: np.ndarray) -> np.ndarray:
        """Raw model outputs float32 [batch, labels] for the model's input.

        The input is [batch, frames, mel] features, or for a wave-in model
        (:attr:`input_kind` ``"waveform"``) the waves themselves: float32 [batch, samples]
        at :attr:`sample_rate`, at least one frame long (:mod:`ast_onnx.runtime.waveform`).
        """
        if self.input_kind == "waveform":
            opts = self.frontend.options
            x = check_waveform_batch(input_values, opts.window_size, self.sample_rate)
        else:
            x = self._check_input_values(input_values)
        outs = [self._run(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0, len(self.labels)), np.float32)

    def window_logits(
        self, audio: Audio | Sequence[Audio], sample_rate: int | None = None
    ) -> np.ndarray:
        """Logits float32 [items, labels] of each input's first window, for either input kind.

        Longer audio is cut to one window, as in :meth:`features`; :meth:`classify`
        scores every window instead.
        """
        if self.input_kind != "waveform":
            return self.logits(self.features(audio, sample_rate))
        items = [audio] if _is_single(audio) else list(audio)
        waves = [prepare_audio(a, sample_rate, self.sample_rate) for a in items]
        cut = [w[: self.window_samples] for w in waves]
        return run_grouped(self._run, cut, self.batch_size, self.frontend.options.window_size)

    def scores(self, input_values: np.ndarray) -> np.ndarray:
        """Activated scores (sigmoid or softmax) float32 [batch, labels]."""
        return activate(self.logits(input_values), self.activation)

    def _run(self, x: np.ndarray) -> np.ndarray:
        io = self._io
        out = self._session.run([io.output_name], {io.input_name: x.astype(io.input_dtype)})[0]
        return np.asarray(out, dtype=np.float32)

    def _check_input_values(self, input_values: np.ndarray) -> np.ndarray:
        x = np.asarray(input_values)
        want = (self.frontend.max_length, self.frontend.num_mel_bins)
        if x.ndim != 3 or x.shape[1:] != want or x.dtype.kind != "f":
            raise InvalidAudioError(
                f"input_values must be float [batch, {want[0]}, {want[1]}], got "
                f"{x.dtype} {list(x.shape)}"
            )
        if not np.isfinite(x).all():
            raise InvalidAudioError("input_values contain NaN/Inf")
        return x

    # ----- classification -----

    def classify(
        self,
        audio: Audio | Sequence[Audio],
        sample_rate: int | None = None,
        top_k: int | None = 5,
        events: bool | EventOptions = False,
    ) -> Classification | list[Classification]:
        """Classify one input or a list of inputs.

        Args:
            audio: A path, a numpy array (float [-1, 1] or int16/int32 PCM, mono or
                (samples, channels)), or a list of those.
            sample_rate: Rate of array inputs (None: already at :attr:`sample_rate`).
            top_k: Labels to report per input (None: all, ranked).
            events: Detect sound events over the windows (``Classification.events``):
                True for the default rules, or :class:`~ast_onnx.runtime.events.EventOptions`.
                A :meth:`stream` with the same hop gives the same events.

        Returns:
            A :class:`Classification` for a single input, a list for a list.
        """
        single = _is_single(audio)
        items = [audio] if single else list(audio)
        waves = [prepare_audio(a, sample_rate, self.sample_rate) for a in items]
        paths = [str(a) if isinstance(a, (str, os.PathLike)) else None for a in items]
        results = self._classify_waves(waves, paths, top_k, events)
        return results[0] if single else results

    def stream(
        self,
        hop: float | None = None,
        sample_rate: int | None = None,
        events: bool | EventOptions | None = None,
        channels: int | None = None,
        top_k: int = 5,
    ) -> Stream:
        """A :class:`~ast_onnx.runtime.stream.Stream` scoring audio pushed in chunks.

        Its windows, scores and events equal those of :meth:`classify` (with
        ``events``) on the whole audio, for the same hop.

        Args:
            hop: Seconds between windows, a whole number of fbank frames (10 ms for AST)
                up to one window; None: this runtime's hop (``window_hop``).
            sample_rate: Rate of the audio to push; None or the model's rate (streams
                are not resampled).
            events: Event rules (:class:`~ast_onnx.runtime.events.EventOptions`); None
                or True: the defaults; False: windows only.
            channels: Channels of 2-D chunks (None: those of the first one).
            top_k: Labels in each window's ``labels``.

        Raises:
            InvalidOptionError: A hop that is not whole frames, or longer than the
                model's window; a sample rate other than the model's.
        """
        hop_samples = self.hop_samples if hop is None else round(float(hop) * self.sample_rate)
        return Stream(
            run=self._run,
            frontend=self.frontend,
            labels=self.labels,
            activation=self.activation,
            input_kind=self.input_kind,
            batch_size=self.batch_size,
            hop_samples=hop_samples,
            sample_rate=sample_rate,
            events=True if events is None else events,
            channels=channels,
            top_k=top_k,
        )

    def classify_files(
        self, paths: Iterable[str | os.PathLike], top_k: int | None = 5
    ) -> Iterator[tuple[str, Classification | AstOnnxError]]:
        """Classify files in batches, yielding ``(path, result)`` in order as they finish.

        A file that cannot be read yields ``(path, error)`` (an
        :class:`~ast_onnx.errors.AstOnnxError`) and the others go on.
        """
        pending: list[tuple[str, np.ndarray | AstOnnxError]] = []
        for p in paths:
            try:
                pending.append((str(p), prepare_audio(p, None, self.sample_rate)))
            except AstOnnxError as e:
                pending.append((str(p), e))
            if sum(isinstance(w, np.ndarray) for _, w in pending) >= self.batch_size:
                yield from self._flush(pending, top_k)
                pending = []
        yield from self._flush(pending, top_k)

    def _flush(self, pending, top_k) -> Iterator[tuple[str, Classification | AstOnnxError]]:
        good = [(p, w) for p, w in pending if isinstance(w, np.ndarray)]
        results = iter(self._classify_waves([w for _, w in good], [p for p, _ in good], top_k))
        for p, w in pending:
            yield (p, next(results)) if isinstance(w, np.ndarray) else (p, w)

    def _classify_waves(
        self,
        waves: list[np.ndarray],
        paths: list[str | None],
        k: int | None,
        events: bool | EventOptions = False,
    ) -> list[Classification]:
        if k is not None:
            _check_int("top_k", k, 1)
        detector = make_detector(events, self.labels, self.activation)
        plans = [plan_windows(len(w), self.window_samples, self.hop_samples) for w in waves]
        segments = [
            w[s : s + self.window_samples]
            for w, plan in zip(waves, plans, strict=True)
            for s in plan.starts
        ]
        chunks = []
        if self.input_kind == "waveform":  # waves of equal length share a run
            if segments:
                frame = self.frontend.options.window_size
                logits = run_grouped(self._run, segments, self.batch_size, frame)
                chunks.append(activate(logits, self.activation))
        else:
            for i in range(0, len(segments), self.batch_size):
                feats = self.frontend(segments[i : i + self.batch_size]).input_values
                chunks.append(activate(self._run(feats), self.activation))
        all_scores = np.concatenate(chunks) if chunks else np.zeros((0, len(self.labels)))
        k = len(self.labels) if k is None else k
        results, offset = [], 0
        for plan, path in zip(plans, paths, strict=True):
            window_scores = all_scores[offset : offset + len(plan)]
            offset += len(plan)
            windows = [
                WindowScore(start, end, s, top_k(s, self.labels, k))
                for (start, end), s in zip(
                    plan.bounds(self.sample_rate), window_scores, strict=True
                )
            ]
            scores = aggregate(window_scores, self.aggregate)
            found = window_events(window_scores, plan, self.sample_rate, detector)
            results.append(
                Classification(
                    labels=top_k(scores, self.labels, k),
                    scores=scores,
                    duration=plan.num_samples / self.sample_rate,
                    windows=windows,
                    path=path,
                    events=found,
                )
            )
        return results


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidOptionError(f"{name} must be an integer >= {minimum}, got {value!r}")
