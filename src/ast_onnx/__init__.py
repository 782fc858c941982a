"""ast-onnx: Audio Spectrogram Transformer classifiers as lean ONNX deployments.

``import ast_onnx`` needs numpy only; ``Runtime`` additionally needs onnxruntime
(``pip install "ast-onnx[cpu]"`` or ``"ast-onnx[gpu]"``) and is imported on first use.
torch, transformers and torchaudio are never imported from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ast_onnx import deprecated
from ast_onnx.errors import (
    AstOnnxError,
    AudioFileError,
    CheckpointError,
    DriftError,
    ExportError,
    InvalidAudioError,
    InvalidOptionError,
    MetadataError,
    MissingDependencyError,
    ModelError,
    ModelOutputError,
    ModelTimeoutError,
    ProcessingError,
    ProviderError,
    SampleRateWarning,
)
from ast_onnx.metadata import ModelMetadata

# Old module paths of moved modules, for one release (ast_onnx.deprecated.MOVED).
deprecated.install()

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ast_onnx.runtime import Runtime

__all__ = [
    "AstOnnxError",
    "AudioFileError",
    "CheckpointError",
    "DriftError",
    "ExportError",
    "InvalidAudioError",
    "InvalidOptionError",
    "MetadataError",
    "MissingDependencyError",
    "ModelError",
    "ModelMetadata",
    "ModelOutputError",
    "ModelTimeoutError",
    "ProcessingError",
    "ProviderError",
    "Runtime",
    "SampleRateWarning",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # Lazy so that `import ast_onnx` works without onnxruntime installed.
    if name == "Runtime":
        from ast_onnx.runtime import Runtime

        return Runtime
    raise AttributeError(f"module 'ast_onnx' has no attribute {name!r}")
