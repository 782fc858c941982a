"""The one schema of what ast-onnx stores in an ONNX file's ``metadata_props``.

Everything the runtime needs to turn a wave into labels travels inside the model:
labels, activation, the frontend's parameters, precision and the export's
verification result. It is stored as one JSON document under the key
:data:`METADATA_KEY` (ONNX metadata values are strings), versioned by
``schema_version`` so older runtimes can refuse newer files clearly.

This module is torch-free and onnx-free: the runtime reads the properties from
``onnxruntime.InferenceSession.get_modelmeta().custom_metadata_map``; the export
side writes them with :func:`to_props` into ``onnx.ModelProto.metadata_props``.

A model file may come from anyone, so reading its metadata is bounded: at most
:data:`MAX_METADATA_BYTES` of JSON nested at most :data:`MAX_METADATA_DEPTH` deep, no
NaN/Infinity, and every field's type checked (labels: 1 to :data:`MAX_LABELS` strings of
at most :data:`MAX_LABEL_LENGTH` characters) before anything is built from it. The
``frontend`` mapping is checked by its owner, ``FeatureExtractor.from_dict``, which
bounds each value before it builds a table.

Schema versions: 2 added ``thresholds`` and ``default_threshold`` (decision thresholds,
e.g. tuned by ``ast-thresholds --write``). Version-1 files load unchanged (no
thresholds); a version-1 document's keys of those names are not read as thresholds
(they stay in ``extra``, as any unknown key of that version did). 3 added
``quantization`` (how an int8 model was made: calibration, the nodes left in float32 by
the accuracy-aware selection and what each cost); older files load with it empty. 4 added
``outputs`` (the graph outputs when a model has more than ``logits``: ``embedding``,
``hidden_states``), ``embedding_size`` and ``hidden_layer``; a model without logits
(exported from a bare ``ASTModel``) has no labels.

A file is written with the oldest version that holds what it uses
(:meth:`ModelMetadata.written_version`), not always the newest: an fp32 export without
thresholds is a version-1 document, so runtimes deployed before versions 2 and 3 still
load it; only a file that uses thresholds (2) or a quantization record (3) needs a
runtime that knows them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, TypeGuard, get_args

from ast_onnx.errors import ExportError, MetadataError

METADATA_KEY = "ast_onnx"
SCHEMA_VERSION = 4
#: Fields added by each schema version after the first (read only from files that have it).
_ADDED_IN = {
    "thresholds": 2,
    "default_threshold": 2,
    "quantization": 3,
    "outputs": 4,
    "embedding_size": 4,
    "hidden_layer": 4,
}
#: Decision threshold of a class when neither the caller nor the model names one.
DEFAULT_THRESHOLD = 0.5

Activation = Literal["sigmoid", "softmax"]
Precision = Literal["fp32", "fp16", "int8-dynamic", "int8-static"]
#: What an export is asked for: a stored precision, or ``"int8"`` (dynamic, or static when
#: calibration audio is given).
ExportPrecision = Literal["fp32", "fp16", "int8", "int8-dynamic", "int8-static"]
InputKind = Literal["features", "waveform"]

#: Canonical graph I/O names: the feature input, the wave input of wave-in models, the
#: raw output, the activated output that wave-in models add, the pooled embedding
#: [batch, hidden] and one layer's hidden states [batch, tokens, hidden].
INPUT_VALUES = "input_values"
WAVEFORM = "waveform"
LOGITS = "logits"
SCORES = "scores"
EMBEDDING = "embedding"
HIDDEN_STATES = "hidden_states"
#: The outputs an export may write, in graph order.
MODEL_OUTPUTS: tuple[str, ...] = (LOGITS, EMBEDDING, HIDDEN_STATES)
#: Lowest default-domain ONNX opset ast-onnx writes (LayerNormalization is standard from 17).
MIN_OPSET = 17

ACTIVATIONS: tuple[Activation, ...] = get_args(Activation)
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
INPUT_KINDS: tuple[InputKind, ...] = get_args(InputKind)


def is_activation(value: object) -> TypeGuard[Activation]:
    """Whether ``value`` names an activation (:data:`ACTIVATIONS`)."""
    return value in ACTIVATIONS


#: Most bytes of metadata JSON read from a model (527 AudioSet labels take ~15 KB).
MAX_METADATA_BYTES = 1 << 20
#: Deepest nesting of JSON arrays/objects accepted (ours is 3 deep).
MAX_METADATA_DEPTH = 32
#: Most labels, and most characters in one label.
MAX_LABELS = 65_536
MAX_LABEL_LENGTH = 256
#: Most characters in the other text fields (names, source, version).
MAX_TEXT_LENGTH = 4096

_TEXT_FIELDS = ("input_name", "output_name", "source", "package_version")


@dataclass
class ModelMetadata:
    """What an exported AST model says about itself.

    Attributes:
        labels: Class names, index-aligned with the model's logits.
        activation: ``"sigmoid"`` for multi-label models (AudioSet), ``"softmax"``
            for single-label ones (Speech Commands).
        frontend: ``FeatureExtractor.to_dict()`` of the frontend the model was
            trained with (sample rate, mel bins, max_length, mean, std, fbank options).
        precision: Numeric precision of the exported graph.
        input_kind: ``"features"`` (input_values [batch, frames, mel]) or
            ``"waveform"`` (the fbank is inside the graph).
        input_name / output_name: Graph I/O names.
        optimized: Whether onnxruntime's transformer fusions were applied.
        source: The checkpoint the model was exported from.
        package_version: ast-onnx version that wrote the file.
        opset: ONNX opset of the default domain.
        verification: Drift against PyTorch fp32 recorded at export time.
        thresholds: Per-class decision thresholds in [0, 1], label -> score (schema 2).
        default_threshold: Threshold of the classes ``thresholds`` does not name; None:
            :data:`DEFAULT_THRESHOLD` (schema 2).
        quantization: How an int8 model was quantized (schema 3): e.g. ``format``,
            ``calibration``, ``fp32_nodes`` and the ``selection`` record; empty otherwise.
        outputs: The graph outputs in order when they are more than ``[output_name]``
            (schema 4), e.g. ``["logits", "embedding"]``; empty: ``[output_name]`` only.
        embedding_size: Length of the ``embedding`` vector (schema 4), None without one.
        hidden_layer: Which layer ``hidden_states`` holds, as an index of transformers'
            ``hidden_states`` tuple (0: the embeddings, N: layer N's output), schema 4.
        extra: Free-form additions (kept on round trip).
    """

    labels: list[str]
    activation: Activation
    frontend: dict[str, Any]
    precision: Precision = "fp32"
    input_kind: InputKind = "features"
    input_name: str = INPUT_VALUES
    output_name: str = LOGITS
    optimized: bool = False
    source: str = ""
    package_version: str = ""
    opset: int | None = None
    verification: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    default_threshold: float | None = None
    quantization: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    embedding_size: int | None = None
    hidden_layer: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        self._check_outputs()
        if self.has_logits or self.labels:
            _check_labels(self.labels)
        self.labels = list(self.labels)
        for name, allowed in (
            ("activation", ACTIVATIONS),
            ("precision", PRECISIONS),
            ("input_kind", INPUT_KINDS),
        ):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in allowed:
                raise MetadataError(f"{name} must be one of {allowed}, got {_short(value)}")
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) > MAX_TEXT_LENGTH:
                raise MetadataError(
                    f"{name} must be a string of at most {MAX_TEXT_LENGTH} characters, "
                    f"got {_short(value)}"
                )
        for name in ("input_name", "output_name"):
            if not getattr(self, name):
                raise MetadataError(f"{name} must not be empty")
        for name in ("frontend", "verification", "quantization", "extra"):
            if not isinstance(getattr(self, name), dict):
                raise MetadataError(
                    f"{name} must be a JSON object, got {_short(getattr(self, name))}"
                )
        # Depth counted from the document's top, as from_props sees it: the objects sit
        # one level below it.
        _check_depth([self.frontend, self.verification, self.quantization, self.extra])
        if self.quantization and self.schema_version < _ADDED_IN["quantization"]:
            raise MetadataError(
                f"quantization needs schema_version >= {_ADDED_IN['quantization']}, "
                f"got {self.schema_version}"
            )
        if not isinstance(self.optimized, bool):
            raise MetadataError(f"optimized must be true or false, got {_short(self.optimized)}")
        if self.opset is not None and not _is_int(self.opset, 1):
            raise MetadataError(f"opset must be an integer >= 1 or null, got {_short(self.opset)}")
        if not _is_int(self.schema_version, 1):
            raise MetadataError(
                f"schema_version must be an integer >= 1, got {_short(self.schema_version)}"
            )
        self._check_thresholds()

    def _check_outputs(self) -> None:
        """``outputs``: distinct names of :data:`MODEL_OUTPUTS`, with their sizes."""
        outputs = self.outputs
        if not isinstance(outputs, list | tuple) or any(
            not isinstance(o, str) or o not in MODEL_OUTPUTS for o in outputs
        ):
            raise MetadataError(
                f"outputs must be a list of names from {MODEL_OUTPUTS}, got {_short(outputs)}"
            )
        if len(set(outputs)) != len(outputs):
            raise MetadataError(f"outputs must not repeat a name, got {_short(outputs)}")
        self.outputs = list(outputs)
        if self.outputs and self.schema_version < _ADDED_IN["outputs"]:
            raise MetadataError(
                f"outputs need schema_version >= {_ADDED_IN['outputs']}, got {self.schema_version}"
            )
        if self.outputs and self.output_name not in self.outputs:
            raise MetadataError(
                f"output_name {_short(self.output_name)} is not one of outputs {self.outputs}"
            )
        for name, needs in (("embedding_size", EMBEDDING), ("hidden_layer", HIDDEN_STATES)):
            value = getattr(self, name)
            if value is None:
                continue
            if not _is_int(value, 0 if name == "hidden_layer" else 1) or value > 1 << 20:
                raise MetadataError(f"{name} must be a small integer or null, got {_short(value)}")
            if needs not in self.outputs:
                raise MetadataError(f"{name} is set but outputs {self.outputs} lack {needs!r}")

    @property
    def output_names(self) -> list[str]:
        """The model's graph outputs: ``outputs``, else ``[output_name]``."""
        return list(self.outputs) or [self.output_name]

    @property
    def has_logits(self) -> bool:
        """Whether the model outputs logits (a bare ``ASTModel`` export does not)."""
        return LOGITS in self.output_names or self.output_name not in MODEL_OUTPUTS

    def _check_thresholds(self) -> None:
        """Thresholds: numbers in [0, 1], keyed by labels the model has (so bounded)."""
        if not isinstance(self.thresholds, dict):
            raise MetadataError(
                f"thresholds must be a JSON object label -> number, got {_short(self.thresholds)}"
            )
        if self.thresholds and self.schema_version < _ADDED_IN["thresholds"]:
            raise MetadataError(
                f"thresholds need schema_version >= {_ADDED_IN['thresholds']}, "
                f"got {self.schema_version}"
            )
        known = set(self.labels)
        for label, value in self.thresholds.items():
            if label not in known:
                raise MetadataError(
                    f"thresholds name label {_short(label)}, which is not one of the "
                    f"model's {len(self.labels)} labels"
                )
            if not _is_unit(value):
                raise MetadataError(
                    f"thresholds[{_short(label)}] must be a number in [0, 1], got {_short(value)}"
                )
        if self.default_threshold is not None and not _is_unit(self.default_threshold):
            raise MetadataError(
                "default_threshold must be a number in [0, 1] or null, "
                f"got {_short(self.default_threshold)}"
            )
        self.thresholds = {k: float(v) for k, v in self.thresholds.items()}
        if self.default_threshold is not None:
            self.default_threshold = float(self.default_threshold)

    @property
    def has_thresholds(self) -> bool:
        """Whether the model stores any decision threshold."""
        return bool(self.thresholds) or self.default_threshold is not None

    def threshold_vector(self) -> list[float] | None:
        """The model's threshold of each label, index-aligned; None if it stores none.

        A label ``thresholds`` does not name gets ``default_threshold``, else
        :data:`DEFAULT_THRESHOLD`.
        """
        if not self.has_thresholds:
            return None
        default = DEFAULT_THRESHOLD if self.default_threshold is None else self.default_threshold
        return [self.thresholds.get(label, default) for label in self.labels]

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def written_version(self) -> int:
        """The oldest schema version that holds this document's fields: what is written."""
        used = [
            since
            for name, since in _ADDED_IN.items()
            if since <= self.schema_version and getattr(self, name) not in ({}, None, [])
        ]
        return max([1, *used])

    def to_dict(self) -> dict[str, Any]:
        """All fields, less those newer than the version written (:meth:`written_version`)."""
        data = asdict(self)
        data["schema_version"] = version = self.written_version()
        for name, since in _ADDED_IN.items():
            if version < since:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        """Build from :meth:`to_dict` output (unknown keys go to ``extra``), fully checked."""
        if not isinstance(data, dict):
            raise MetadataError(f"model metadata must be a JSON object, got {_short(data)}")
        version = data.get("schema_version", SCHEMA_VERSION)
        if not _is_int(version, 1) or version > SCHEMA_VERSION:
            raise MetadataError(
                f"model metadata has schema_version {version!r}; this ast-onnx reads "
                f"versions <= {SCHEMA_VERSION}: upgrade ast-onnx"
            )
        known = {f.name for f in fields(cls)}
        known -= {name for name, since in _ADDED_IN.items() if version < since}
        missing = [k for k in ("labels", "activation", "frontend") if k not in data]
        if missing:
            raise MetadataError(f"model metadata lacks required field(s) {missing}")
        kwargs = {k: v for k, v in data.items() if k in known}
        unknown = {k: v for k, v in data.items() if k not in known}
        if unknown:
            extra = kwargs.setdefault("extra", {})
            if not isinstance(extra, dict):
                raise MetadataError(f"extra must be a JSON object, got {_short(extra)}")
            kwargs["extra"] = {**extra, **unknown}
        return cls(**kwargs)

    def to_props(self) -> dict[str, str]:
        """Serialize to ONNX ``metadata_props`` (string key -> string value).

        Raises:
            MetadataError: A value is not standard JSON (NaN, Infinity, or not JSON-able)
                or the text exceeds :data:`MAX_METADATA_BYTES`: :meth:`from_props`
                would refuse to read it back.
        """
        try:
            text = json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise MetadataError(f"metadata is not standard JSON: {e}") from e
        _check_size(text)
        return {METADATA_KEY: text}

    @classmethod
    def from_props(cls, props: dict[str, str]) -> ModelMetadata:
        """Parse from ONNX ``metadata_props``; raises :class:`MetadataError` if absent."""
        if METADATA_KEY not in props:
            raise MetadataError(
                f"the model has no '{METADATA_KEY}' metadata (not exported by ast-onnx)"
            )
        text = props[METADATA_KEY]
        if not isinstance(text, str):
            raise MetadataError(f"the model's '{METADATA_KEY}' metadata is not text")
        _check_size(text)
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except RecursionError as e:  # nesting beyond the interpreter's recursion limit
            raise MetadataError(
                f"the model's '{METADATA_KEY}' metadata nests deeper than "
                f"{MAX_METADATA_DEPTH} levels"
            ) from e
        except ValueError as e:  # JSONDecodeError, NaN/Infinity, ints of > 4300 digits
            raise MetadataError(f"the model's '{METADATA_KEY}' metadata is not JSON: {e}") from e
        if not isinstance(data, dict):
            raise MetadataError(f"the model's '{METADATA_KEY}' metadata is not a JSON object")
        return cls.from_dict(data)


def has_metadata(props: dict[str, str]) -> bool:
    """Whether ONNX metadata props carry ast-onnx metadata."""
    return METADATA_KEY in props


def check_opset(opset: Any) -> int:
    """``opset`` if it is an int >= :data:`MIN_OPSET`, else :class:`ExportError`."""
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise ExportError(f"opset must be an integer >= {MIN_OPSET}, got {opset!r}")
    return opset


def opset_of(proto: Any) -> int:
    """Opset version of the default ONNX domain of an ``onnx.ModelProto``."""
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise ExportError("the model imports no default-domain opset")


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_unit(value: Any) -> bool:
    """A real number (not a bool) in [0, 1]."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0


def _short(value: Any) -> str:
    """``repr(value)`` cut to 80 characters, for messages about untrusted values."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_labels(labels: Any) -> None:
    if not isinstance(labels, list | tuple) or not labels:
        raise MetadataError(f"labels must be a non-empty list of class names, got {_short(labels)}")
    if len(labels) > MAX_LABELS:
        raise MetadataError(f"labels: {len(labels)} is more than the {MAX_LABELS} allowed")
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            raise MetadataError(f"label {i} must be a string, got {_short(label)}")
        if len(label) > MAX_LABEL_LENGTH:
            raise MetadataError(
                f"label {i} has {len(label)} characters; at most {MAX_LABEL_LENGTH} are allowed"
            )


def _check_size(text: str) -> None:
    # len() counts characters, at most 4 UTF-8 bytes each: encode only when it may fit.
    if len(text) > MAX_METADATA_BYTES or len(text.encode("utf-8")) > MAX_METADATA_BYTES:
        raise MetadataError(
            f"the model's '{METADATA_KEY}' metadata is larger than {MAX_METADATA_BYTES} bytes"
        )


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _check_depth(data: Any) -> None:
    """Raise :class:`MetadataError` if ``data`` nests deeper than :data:`MAX_METADATA_DEPTH`.

    Iterative: the check itself must not recurse (copies and serializers later do).
    """
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_METADATA_DEPTH:
            raise MetadataError(
                f"the model's '{METADATA_KEY}' metadata nests deeper than "
                f"{MAX_METADATA_DEPTH} levels"
            )
        children = value.values() if isinstance(value, dict) else value
        if isinstance(value, dict | list):
            stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
