"""The :class:`Runtime`: an AST ONNX model, its frontend and its labels, behind one object.

Needs numpy, scipy, soundfile and onnxruntime only. One Runtime can be shared by
threads: it keeps no per-call state, and ``InferenceSession.run`` is thread-safe.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal, cast, overload

import numpy as np
import numpy.typing as npt

from ast_onnx.errors import (
    AstOnnxError,
    InvalidAudioError,
    InvalidOptionError,
    ModelError,
    ModelOutputError,
    SampleRateWarning,
)
from ast_onnx.frontend import check_max_seconds, prepare_audio
from ast_onnx.metadata import ModelMetadata
from ast_onnx.runtime.batches import classify_in_batches
from ast_onnx.runtime.embeddings import (
    ClipPool,
    Embedding,
    embed_waves,
    item_path,
    require_embedding,
)
from ast_onnx.runtime.events import EventOptions
from ast_onnx.runtime.interruptible import run_session
from ast_onnx.runtime.loading import open_session, resolve_model_path
from ast_onnx.runtime.options import DEFAULT_BATCH_SIZE, RuntimeOptions, check_int
from ast_onnx.runtime.results import Classification, nonfinite_error
from ast_onnx.runtime.scoring import WindowScorer, activate
from ast_onnx.runtime.session import (
    inspect_io,
    make_frontend,
    model_activation,
    model_thresholds,
    read_metadata,
    resolve_labels,
)
from ast_onnx.runtime.stream import Stream
from ast_onnx.runtime.waveform import check_wave_length, check_waveform_batch, run_grouped
from ast_onnx.runtime.windows import hop_samples, plan_windows

logger = logging.getLogger(__name__)

Audio = str | os.PathLike[str] | np.ndarray


def default_batch_size(metadata: ModelMetadata | None) -> int:
    """1 for dynamic int8 models (batch-invariant scores), else :data:`DEFAULT_BATCH_SIZE`."""
    return (
        1 if metadata is not None and metadata.precision == "int8-dynamic" else DEFAULT_BATCH_SIZE
    )


def _items(audio: Audio | Sequence[Audio]) -> tuple[bool, list[Audio]]:
    """``(single, items)``: a list or tuple is a batch, anything else one input."""
    if isinstance(audio, (list, tuple)):
        return False, list(audio)
    return True, [cast(Audio, audio)]


def _is_samples(audio: Any) -> bool:
    """Whether ``audio`` is samples (an array or a list of numbers), not a file."""
    return not (isinstance(audio, str | os.PathLike | bytes | bytearray) or hasattr(audio, "read"))


def warn_without_rate(items: Sequence[Any], sample_rate: int | None, model_rate: int) -> None:
    """A :class:`~ast_onnx.errors.SampleRateWarning` for samples given without their rate."""
    if sample_rate is None and any(_is_samples(a) for a in items):
        warnings.warn(
            f"samples were given without sample_rate and are taken to be at the model's "
            f"{model_rate} Hz; pass sample_rate= (their real rate, resampled if it differs)",
            SampleRateWarning,
            stacklevel=3,
        )


class Runtime:
    """Classify audio with an AST model exported to ONNX.

    Args:
        path: The ``.onnx`` file, or ``"demo"``: the bundled demo keyword spotter
            (:func:`ast_onnx.data.demo_model_path`).
        options: A :class:`~ast_onnx.runtime.options.RuntimeOptions` (defaults if None).
        **overrides: Any :class:`~ast_onnx.runtime.options.RuntimeOptions` field by name,
            applied over ``options``: ``providers``, ``device_id``, ``threads``,
            ``fallback``, ``labels``, ``activation``, ``batch_size``, ``cache_dir``,
            ``window_hop``, ``aggregate``, ``gpu_mem_limit``, ``provider_options``,
            ``prepack``, ``max_audio_seconds``, ``allow_any_ops``, ``run_timeout``.
            E.g. ``Runtime("m.onnx", providers="cpu", batch_size=4)``.

    Raises:
        ModelError: Missing/corrupt file, a model that does not look like AST, or a
            graph with operators no ast-onnx export contains (unless ``allow_any_ops``).
        ProviderError: A requested provider is unavailable or failed to load.
        MissingDependencyError: onnxruntime is not installed.
        InvalidOptionError: An option out of range, or an unknown option name.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        options: RuntimeOptions | None = None,
        **overrides: Any,
    ) -> None:
        opts = (options or RuntimeOptions()).replace(**overrides)
        self.options = opts
        self.max_audio_seconds = check_max_seconds(opts.max_audio_seconds)
        path = resolve_model_path(path)
        self.path = str(path)
        self.aggregate = opts.aggregate
        session, self.provider = open_session(path, opts)
        self._session = session
        self.metadata: ModelMetadata | None = read_metadata(session, path)
        #: Most items per ``session.run`` (see :attr:`RuntimeOptions.batch_size`).
        self.batch_size = opts.batch_size or default_batch_size(self.metadata)
        self._io = inspect_io(session, path, self.metadata)
        self.frontend = make_frontend(self.metadata, self._io, path)
        #: ``"features"``, or ``"waveform"`` for wave-in models (fbank inside the graph).
        self.input_kind = self._io.input_kind
        self.labels = resolve_labels(opts.labels, self.metadata, self._io, path)
        self.activation = model_activation(opts.activation, self.metadata)
        if self.metadata is None:
            logger.warning(
                "model %r has no ast-onnx metadata: using the AST default frontend "
                "(%d frames x %d mel, 16 kHz), %d %s labels and %s activation",
                self.path,
                self.frontend.max_length,
                self.frontend.num_mel_bins,
                len(self.labels),
                "caller's" if opts.labels is not None else "generic",
                self.activation,
            )
        #: Name of the model's pooled ``embedding`` output, or None (see :meth:`embed`).
        self.embedding_name: str | None = self._io.embedding_name
        #: The model's decision threshold of each label (metadata schema 2), or None.
        self.thresholds: np.ndarray | None = model_thresholds(self.metadata, len(self.labels))
        self.window_samples = int(self.frontend.window_samples)
        self.hop_samples = hop_samples(self.frontend, opts.window_hop)
        logger.info("loaded %s on %s (%s)", self.path, self.provider, session.get_providers())

    # ----- construction helpers -----

    def _prepare(self, audio: Audio, sample_rate: int | None = None) -> np.ndarray:
        wave = prepare_audio(audio, sample_rate, self.sample_rate, self.max_audio_seconds)
        name = str(audio) if isinstance(audio, (str, os.PathLike)) else None
        return check_wave_length(wave, self.frontend.options.window_size, self.sample_rate, name)

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
    ) -> npt.NDArray[np.float32]:
        """Model input for audio: float32 [batch, frames, mel] (padded or cut to one window).

        Longer audio is cut to the first window here (with a warning); :meth:`classify`
        windows it instead.
        """
        _, items = _items(audio)
        warn_without_rate(items, sample_rate, self.sample_rate)
        waves = [self._prepare(a, sample_rate) for a in items]
        feats = self.frontend(waves)
        if np.any(feats.truncated):
            logger.warning(
                "features(): %d input(s) longer than the model's %.2f s window were cut to it; "
                "classify() scores every window instead",
                int(np.sum(feats.truncated)),
                self.window_seconds,
            )
        return feats.input_values

    def logits(self, input_values: np.ndarray) -> npt.NDArray[np.float32]:
        """Raw model outputs float32 [batch, labels] for the model's input.

        The input is [batch, frames, mel] features, or for a wave-in model
        (:attr:`input_kind` ``"waveform"``) the waves themselves: float32 [batch, samples]
        at :attr:`sample_rate`, at least one frame long (:mod:`ast_onnx.runtime.waveform`).
        """
        self._require_logits()
        if self.input_kind == "waveform":
            opts = self.frontend.options
            x = check_waveform_batch(input_values, opts.window_size, self.sample_rate)
        else:
            x = self._check_input_values(input_values)
        outs = [self._run(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        out = np.concatenate(outs) if outs else np.zeros((0, len(self.labels)), np.float32)
        return _check_finite(out)

    def logits_and_embeddings(
        self, input_values: np.ndarray
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """Logits and embedding vectors of feature windows, from the same model runs.

        For callers that hold features already (the Ray actors); ``batch_size`` windows
        per run, as :meth:`logits`.

        Returns:
            ``(logits, vectors)``: float32 [batch, labels] (None for a model with
            embeddings only) and float32 [batch, hidden].

        Raises:
            ModelError: The model has no ``embedding`` output, or takes waves.
            ModelOutputError: NaN/Inf in the outputs.
        """
        name = require_embedding(self.embedding_name, self.path)
        if self.input_kind == "waveform":
            raise ModelError(f"model {self.path!r} takes waves, not features")
        x = self._check_input_values(input_values)
        names = [self._io.output_name, name] if self._io.has_logits else [name]
        runs = [
            self._run_outputs(x[i : i + self.batch_size], names)
            for i in range(0, len(x), self.batch_size)
        ]
        if not runs:
            raise InvalidAudioError("input_values is an empty batch")
        outs = [_check_finite(np.concatenate([r[j] for r in runs])) for j in range(len(names))]
        return (outs[0] if len(outs) == 2 else None), outs[-1]

    def window_logits(
        self, audio: Audio | Sequence[Audio], sample_rate: int | None = None
    ) -> npt.NDArray[np.float32]:
        """Logits float32 [items, labels] of each input's first window, for either input kind.

        Longer audio is cut to one window, as in :meth:`features`; :meth:`classify`
        scores every window instead.
        """
        if self.input_kind != "waveform":
            return self.logits(self.features(audio, sample_rate))
        _, items = _items(audio)
        warn_without_rate(items, sample_rate, self.sample_rate)
        waves = [self._prepare(a, sample_rate) for a in items]
        cut = [w[: self.window_samples] for w in waves]
        frame = self.frontend.options.window_size
        return _check_finite(run_grouped(self._run, cut, self.batch_size, frame, self.sample_rate))

    def scores(self, input_values: np.ndarray) -> npt.NDArray[np.float32]:
        """Activated scores (sigmoid or softmax) float32 [batch, labels]."""
        return activate(self.logits(input_values), self.activation)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self._run_outputs(x, [self._io.output_name])[0]

    def _run_outputs(self, x: np.ndarray, names: list[str]) -> list[np.ndarray]:
        """The ``names`` outputs of one ``session.run`` on ``x``, float32."""
        io = self._io
        feeds: dict[str, np.ndarray] = {io.input_name: x.astype(io.input_dtype)}
        outs = run_session(self._session, names, feeds, self.options.run_timeout)
        return [np.asarray(out, dtype=np.float32) for out in outs]

    def _require_logits(self) -> None:
        if not self._io.has_logits:
            raise ModelError(
                f"model {self.path!r} outputs embeddings only (exported from a bare ASTModel): "
                "it cannot classify; use embed(), or export a classifier checkpoint"
            )

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

    # A str is one path, not a sequence of them: the first overload takes it.
    @overload
    def classify(  # type: ignore[overload-overlap]
        self,
        audio: Audio,
        sample_rate: int | None = None,
        top_k: int | None = 5,
        events: bool | EventOptions = False,
        threshold: float | bool | None = None,
        embedding: bool = False,
    ) -> Classification: ...

    @overload
    def classify(
        self,
        audio: Sequence[Audio],
        sample_rate: int | None = None,
        top_k: int | None = 5,
        events: bool | EventOptions = False,
        threshold: float | bool | None = None,
        embedding: bool = False,
    ) -> list[Classification]: ...

    def classify(
        self,
        audio: Audio | Sequence[Audio],
        sample_rate: int | None = None,
        top_k: int | None = 5,
        events: bool | EventOptions = False,
        threshold: float | bool | None = None,
        embedding: bool = False,
    ) -> Classification | list[Classification]:
        """Classify one input or a list of inputs.

        Args:
            audio: A path, a numpy array (float [-1, 1] or int16/int32 PCM, mono or
                (samples, channels)), or a list of those.
            sample_rate: Rate of array inputs, resampled to :attr:`sample_rate` if it
                differs. None: arrays are taken to be at :attr:`sample_rate`, with a
                :class:`~ast_onnx.errors.SampleRateWarning` (a file has its own rate).
            top_k: Labels to report per input (None: all, ranked).
            events: Detect sound events over the windows (``Classification.events``):
                True for the default rules, or :class:`~ast_onnx.runtime.events.EventOptions`.
                A :meth:`stream` with the same hop gives the same events.
                Classes without a threshold in ``events`` use the model's
                (:attr:`thresholds`).
            threshold: Report every label whose score reaches a threshold instead of
                the top ``top_k`` (``labels`` of the result and of each window, best
                first; possibly empty): a number in [0, 1] for every label, or True for
                the model's own thresholds (:attr:`thresholds`). None: top-k.

        Returns:
            A :class:`Classification` for a single input, a list for a list.

        Raises:
            ModelOutputError: The model returned NaN/Inf for an input.
            InvalidAudioError: Unusable audio, e.g. shorter than one fbank frame.
            ModelTimeoutError: A model call ran past ``run_timeout``.
            InvalidOptionError: ``threshold`` outside [0, 1], or True for a model that
                stores no thresholds.
        """
        cut = self.resolve_threshold(threshold)
        self._require_logits()
        if embedding:
            require_embedding(self.embedding_name, self.path)
        single, items = _items(audio)
        warn_without_rate(items, sample_rate, self.sample_rate)
        waves = [self._prepare(a, sample_rate) for a in items]
        paths = [str(a) if isinstance(a, (str, os.PathLike)) else None for a in items]
        results: list[Classification] = []
        for r in self._classify_waves(waves, paths, top_k, events, cut, embedding):
            if isinstance(r, AstOnnxError):
                raise r
            results.append(r)
        return results[0] if single else results

    def resolve_threshold(self, threshold: float | bool | None) -> np.ndarray | None:
        """Per-label thresholds ``classify(..., threshold=threshold)`` reports labels at.

        Returns:
            One threshold per label, or None (``threshold`` None or False: top-k).

        Raises:
            InvalidOptionError: Not in [0, 1]; True for a model without thresholds.
        """
        if threshold is None or threshold is False:
            return None
        if threshold is True:
            if self.thresholds is None:
                raise InvalidOptionError(
                    f"threshold=True but model {str(self.path)!r} stores no thresholds: "
                    "pass a number, or tune them (ast-thresholds MODEL --eval DIR --write)"
                )
            return self.thresholds
        if not isinstance(threshold, int | float | np.floating) or not 0 <= threshold <= 1:
            raise InvalidOptionError(f"threshold must be in [0, 1] or True, got {threshold!r}")
        return np.full(len(self.labels), float(threshold))

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
            sample_rate: Rate of the audio to push (None: the model's); another rate is
                resampled as it arrives, sample for sample as ``classify`` resamples.
            events: Event rules (:class:`~ast_onnx.runtime.events.EventOptions`); None
                or True: the defaults; False: windows only.
            channels: Channels of 2-D chunks (None: those of the first one).
            top_k: Labels in each window's ``labels``.

        Raises:
            InvalidOptionError: A hop that is not whole frames, or longer than the
                model's window.
            InvalidAudioError: A sample rate outside the supported range.
        """
        self._require_logits()
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
            thresholds=self.thresholds,
        )

    def classify_files(
        self,
        paths: Iterable[str | os.PathLike[str]],
        top_k: int | None = 5,
        events: bool | EventOptions = False,
        threshold: float | bool | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Iterator[tuple[str, Classification | AstOnnxError]]:
        """Classify files in batches, yielding ``(path, result)`` in order as they finish.

        A file that fails in any way (unreadable, over a limit, out of memory, NaN output)
        yields ``(path, error)``, an :class:`~ast_onnx.errors.AstOnnxError`, and the
        others go on (:mod:`ast_onnx.runtime.batches`). ``events`` and ``threshold`` are
        those of :meth:`classify`. Options and models it cannot take raise at once.
        ``progress(done, total)`` is called after each model run with the windows scored
        so far and in all of the current batch of files (one long file is a batch of its
        own), so that a caller can show progress within a long file.
        """
        if top_k is not None:
            check_int("top_k", top_k, 1)
        self._require_logits()
        cut = self.resolve_threshold(threshold)
        self.scorer(top_k=top_k, events=events, thresholds=cut)  # check the options early
        return classify_in_batches(
            paths,
            self._prepare,
            lambda waves, names: self._classify_waves(
                waves, names, top_k, events, cut, progress=progress
            ),
            batch_files=self.batch_size,
            batch_samples=self.batch_size * self.window_samples,
        )

    def _segment_logits(self, segments: list[np.ndarray]) -> np.ndarray:
        """Raw logits [segments, labels] of model-window segments, batch_size per run."""
        if not segments:
            return np.zeros((0, len(self.labels)), np.float32)
        if self.input_kind == "waveform":  # waves of equal length share a run
            frame = self.frontend.options.window_size
            return run_grouped(self._run, segments, self.batch_size, frame, self.sample_rate)
        feats = (
            self.frontend(segments[i : i + self.batch_size]).input_values
            for i in range(0, len(segments), self.batch_size)
        )
        return np.concatenate([self._run(x) for x in feats])

    def _segment_outputs(self, segments: list[np.ndarray], names: list[str]) -> list[np.ndarray]:
        """The ``names`` outputs of feature-input model windows, one run per batch_size."""
        runs = [
            self._run_outputs(self.frontend(segments[i : i + self.batch_size]).input_values, names)
            for i in range(0, len(segments), self.batch_size)
        ]
        return [np.concatenate([r[j] for r in runs]) for j in range(len(names))]

    # ----- embeddings -----

    @property
    def embedding_size(self) -> int | None:
        """Length of the embedding vector, None without an embedding output."""
        if self.embedding_name is None:
            return None
        out = next(o for o in self._session.get_outputs() if o.name == self.embedding_name)
        size = out.shape[-1]
        return size if isinstance(size, int) else None

    @overload
    def embed(
        self,
        audio: Audio | Sequence[Audio],
        sample_rate: int | None = None,
        normalize: bool = False,
        windows: Literal[False] = False,
    ) -> npt.NDArray[np.float32]: ...

    # A str is one path, not a sequence of them: the first overload takes it.
    @overload
    def embed(  # type: ignore[overload-overlap]
        self,
        audio: Audio,
        sample_rate: int | None = None,
        normalize: bool = False,
        *,
        windows: Literal[True],
    ) -> Embedding: ...

    @overload
    def embed(
        self,
        audio: Sequence[Audio],
        sample_rate: int | None = None,
        normalize: bool = False,
        *,
        windows: Literal[True],
    ) -> list[Embedding]: ...

    def embed(
        self,
        audio: Audio | Sequence[Audio],
        sample_rate: int | None = None,
        normalize: bool = False,
        windows: bool = False,
    ) -> npt.NDArray[np.float32] | Embedding | list[Embedding]:
        """The embedding of one input or of a list of inputs (:mod:`.embeddings`).

        Args:
            audio: A path, a numpy array, or a list of those (as for :meth:`classify`).
            sample_rate: Rate of array inputs (None: already at :attr:`sample_rate`).
            normalize: Scale each vector to unit L2 norm (dot product = cosine).
            windows: Return :class:`~ast_onnx.runtime.embeddings.Embedding` objects
                with one vector per model window and its start/end times, beside the
                clip vector.

        Returns:
            Without ``windows``: float32 [hidden] for one input, [n, hidden] for a
            list; each clip vector is the mean of its window vectors. With
            ``windows``: an ``Embedding``, or a list of them.

        Raises:
            ModelError: The model has no ``embedding`` output (the message says how to
                export one).
            ModelOutputError: The model returned NaN/Inf for an input.
        """
        name = require_embedding(self.embedding_name, self.path)
        single, items = _items(audio)
        warn_without_rate(items, sample_rate, self.sample_rate)
        waves = [self._prepare(a, sample_rate) for a in items]
        results: list[Embedding] = []
        for r in self._embed_waves(name, waves, [item_path(a) for a in items], normalize):
            if isinstance(r, Exception):
                raise r
            results.append(r)
        if windows:
            return results[0] if single else list(results)
        if single:
            return results[0].vector
        size = self.embedding_size or 0
        return np.stack([r.vector for r in results]) if results else np.zeros((0, size), np.float32)

    def embed_files(
        self, paths: Iterable[str | os.PathLike[str]], normalize: bool = False
    ) -> Iterator[tuple[str, Embedding | AstOnnxError]]:
        """Embed files in batches, yielding ``(path, Embedding or error)`` in order.

        A file that fails in any way yields its :class:`~ast_onnx.errors.AstOnnxError`
        and the others go on, as in :meth:`classify_files`.

        Raises:
            ModelError: At once, for a model without an embedding output.
        """
        name = require_embedding(self.embedding_name, self.path)
        return classify_in_batches(
            paths,
            self._prepare,
            lambda waves, names: self._embed_waves(name, waves, names, normalize),
            batch_files=self.batch_size,
            batch_samples=self.batch_size * self.window_samples,
        )

    def _embed_waves(
        self, name: str, waves: list[np.ndarray], paths: Sequence[str | None], normalize: bool
    ) -> list[Embedding | ModelOutputError]:
        return embed_waves(
            lambda segments: self._segment_outputs(segments, [name])[0],
            waves,
            paths,
            self.window_samples,
            self.hop_samples,
            self.sample_rate,
            normalize,
        )

    def scorer(
        self,
        top_k: int | None = 5,
        events: bool | EventOptions | None = False,
        thresholds: np.ndarray | None = None,
        keep_windows: bool = True,
    ) -> WindowScorer:
        """The :class:`~ast_onnx.runtime.scoring.WindowScorer` of this model and options.

        What :meth:`classify` scores with; for callers that run the model themselves
        (``thresholds``: per-label cut, as :meth:`resolve_threshold` returns).
        """
        return WindowScorer(
            self.labels,
            self.activation,
            aggregate=self.aggregate,
            top_k=top_k,
            thresholds=thresholds,
            events=events,
            model_thresholds=self.thresholds,
            window=self.window_samples,
            sample_rate=self.sample_rate,
            hop=self.hop_samples,
            keep_windows=keep_windows,
        )

    def _classify_waves(
        self,
        waves: list[np.ndarray],
        paths: Sequence[str | None],
        k: int | None,
        events: bool | EventOptions = False,
        cut: np.ndarray | None = None,
        embedding: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[Classification | ModelOutputError]:
        """One result per wave; an item whose logits hold NaN/Inf gets a ModelOutputError.

        The windows of all waves are run ``batch_size`` at a time, and each batch's
        logits go straight into the scorer: no input's windows are held all at once.
        With ``embedding``, the logits and the embeddings come from the same model runs.
        """
        if k is not None:
            check_int("top_k", k, 1)
        scorer = self.scorer(top_k=k, events=events, thresholds=cut)
        plans = [plan_windows(len(w), self.window_samples, self.hop_samples) for w in waves]
        names = None
        if embedding:
            names = [self._io.output_name, require_embedding(self.embedding_name, self.path)]
        jobs = [(i, s) for i, plan in enumerate(plans) for s in plan.starts]
        results: list[Classification | ModelOutputError] = []
        scored = 0  # windows of the current item already scored
        pool = ClipPool()  # its embedding vectors so far
        for b in range(0, len(jobs), self.batch_size):
            batch = jobs[b : b + self.batch_size]
            segments = [waves[i][s : s + self.window_samples] for i, s in batch]
            if names is None:
                logits, vectors = self._segment_logits(segments), None
            else:  # one session.run per batch gives both
                logits, vectors = self._segment_outputs(segments, names)
            row = 0
            while row < len(batch):
                i = batch[row][0]
                plan = plans[i]
                n = min(len(plan) - scored, len(batch) - row)
                scorer.add(
                    logits[row : row + n], plan.starts[scored : scored + n], plan.num_samples
                )
                if vectors is not None:
                    pool.add(vectors[row : row + n])
                row, scored = row + n, scored + n
                if scored == len(plan):
                    name = paths[i] if paths[i] is not None else f"input {i}"
                    result = scorer.result(plan.num_samples, paths[i], name)
                    if vectors is not None and isinstance(result, Classification):
                        result.embedding = pool.vector()
                    results.append(result)
                    scored, pool = 0, ClipPool()
            if progress is not None:
                progress(min(b + self.batch_size, len(jobs)), len(jobs))
        return results


def _check_finite(logits: np.ndarray) -> np.ndarray:
    """``logits`` if every value is finite, else raise :class:`ModelOutputError`."""
    error = nonfinite_error(logits, "logits", "input")
    if error is not None:
        raise error
    return logits
