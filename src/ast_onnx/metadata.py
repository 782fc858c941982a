"""The one schema of what ast-onnx stores in an ONNX file's ``metadata_props``.

Everything the runtime needs to turn a wave into labels travels inside the model:
labels, activation, the frontend's parameters, precision and the export's
verification result. It is stored as one JSON document under the key
:data:`METADATA_KEY` (ONNX metadata values are strings), versioned by
``schema_version`` so older runtimes can refuse newer files clearly.

This module is torch-free and onnx-free: the runtime reads the properties from
``onnxruntime.InferenceSession.get_modelmeta().custom_metadata_map``; the export
side writes them with :func:`to_props` into ``onnx.ModelProto.metadata_props``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from ast_onnx.errors import ExportError, MetadataError

METADATA_KEY = "ast_onnx"
SCHEMA_VERSION = 1

Activation = Literal["sigmoid", "softmax"]
Precision = Literal["fp32", "fp16", "int8-dynamic", "int8-static"]
InputKind = Literal["features", "waveform"]

#: Canonical graph I/O names: the feature input, the wave input of wave-in models, the
#: raw output and the activated output that wave-in models add.
INPUT_VALUES = "input_values"
WAVEFORM = "waveform"
LOGITS = "logits"
SCORES = "scores"
#: Lowest default-domain ONNX opset ast-onnx writes (LayerNormalization is standard from 17).
MIN_OPSET = 17

ACTIVATIONS: tuple[str, ...] = ("sigmoid", "softmax")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8-dynamic", "int8-static")
INPUT_KINDS: tuple[str, ...] = ("features", "waveform")


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
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise MetadataError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.precision not in PRECISIONS:
            raise MetadataError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.input_kind not in INPUT_KINDS:
            raise MetadataError(f"input_kind must be one of {INPUT_KINDS}, got {self.input_kind!r}")
        if not self.labels:
            raise MetadataError("labels must be a non-empty list of class names")

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        version = data.get("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise MetadataError(
                f"model metadata has schema_version {version!r}; this ast-onnx reads "
                f"versions <= {SCHEMA_VERSION}: upgrade ast-onnx"
            )
        known = {f.name for f in fields(cls)}
        missing = [k for k in ("labels", "activation", "frontend") if k not in data]
        if missing:
            raise MetadataError(f"model metadata lacks required field(s) {missing}")
        kwargs = {k: v for k, v in data.items() if k in known}
        unknown = {k: v for k, v in data.items() if k not in known}
        if unknown:
            kwargs.setdefault("extra", {}).update(unknown)
        return cls(**kwargs)

    def to_props(self) -> dict[str, str]:
        """Serialize to ONNX ``metadata_props`` (string key -> string value)."""
        return {METADATA_KEY: json.dumps(self.to_dict(), sort_keys=True)}

    @classmethod
    def from_props(cls, props: dict[str, str]) -> ModelMetadata:
        """Parse from ONNX ``metadata_props``; raises :class:`MetadataError` if absent."""
        if METADATA_KEY not in props:
            raise MetadataError(
                f"the model has no '{METADATA_KEY}' metadata (not exported by ast-onnx)"
            )
        try:
            data = json.loads(props[METADATA_KEY])
        except json.JSONDecodeError as e:
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
