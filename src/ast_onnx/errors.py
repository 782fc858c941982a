"""The package's exception hierarchy for errors a user can cause.

Every error raised on purpose by ast-onnx derives from :class:`AstOnnxError`, so a
service can catch one type. Each also derives from the closest built-in
(``ValueError``, ``FileNotFoundError``, ``ImportError``...) so generic handlers still work.
"""

from __future__ import annotations


class AstOnnxError(Exception):
    """Base class of all errors raised on purpose by ast-onnx."""


class InvalidAudioError(AstOnnxError, ValueError):
    """Audio samples are unusable: empty, NaN/Inf, wrong shape or dtype, bad sample rate."""


class InvalidOptionError(AstOnnxError, ValueError):
    """An option has a value outside what it accepts (the message names both)."""


class AudioFileError(AstOnnxError, OSError):
    """An audio file is missing, unreadable or in an unsupported format."""


class ModelError(AstOnnxError, ValueError):
    """An ONNX model file is missing, corrupt, or does not look like an AST classifier."""


class MetadataError(ModelError):
    """The model's ast-onnx metadata is absent, incomplete or of an unknown version."""


class ProviderError(AstOnnxError, RuntimeError):
    """A requested onnxruntime execution provider is unavailable or failed to load."""


class CheckpointError(AstOnnxError, ValueError):
    """A PyTorch checkpoint is missing, corrupt, or does not fit the AST architecture."""


class ExportError(AstOnnxError, RuntimeError):
    """Exporting, optimizing or quantizing a model failed, or options do not combine."""


class DriftError(ExportError):
    """An exported model's outputs drift from PyTorch beyond the allowed thresholds."""


class MissingDependencyError(AstOnnxError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class FbankOptionsError(InvalidOptionError):
    """Filterbank / feature-extractor options are invalid or do not combine."""


class GateSpecError(InvalidOptionError):
    """A drift-limit specification (``--max-drift NAME=VALUE,...``) could not be parsed."""


class BenchError(AstOnnxError, ValueError):
    """Benchmark options do not fit together or a target cannot be benchmarked."""


class EvalSetError(AstOnnxError, ValueError):
    """An evaluation directory is missing, empty, or has a bad labels file."""


class StreamClosedError(AstOnnxError, RuntimeError):
    """Audio was pushed to a stream after ``flush()`` ended it."""


def require(module: str, extra: str, feature: str):
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra.

    Args:
        module: Module to import, e.g. ``"onnxruntime"``.
        extra: The ast-onnx extra that provides it, e.g. ``"cpu"``.
        feature: What needs it, used in the message.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(
            f"{feature} requires the '{module}' package: pip install \"ast-onnx[{extra}]\""
        ) from e
