"""The package's exception hierarchy for errors a user can cause.

Every error raised on purpose by ast-onnx derives from :class:`AstOnnxError`, so a
service can catch one type. Each also derives from the closest built-in
(``ValueError``, ``FileNotFoundError``, ``ImportError``...) so generic handlers still work.
"""

from __future__ import annotations

from types import ModuleType


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


class ModelOutputError(AstOnnxError, ValueError):
    """The model returned NaN/Inf for an input: no score is reported for that item."""


class ModelTimeoutError(AstOnnxError, TimeoutError):
    """A model call ran past the Runtime's ``run_timeout`` and was stopped."""


class ProcessingError(AstOnnxError, RuntimeError):
    """One item failed unexpectedly (out of memory, a fault inside libsndfile, scipy or
    onnxruntime); the original exception is its ``__cause__``. See :func:`item_error`."""


class ProviderError(AstOnnxError, RuntimeError):
    """A requested onnxruntime execution provider is unavailable or failed to load."""


class CheckpointError(AstOnnxError, ValueError):
    """A PyTorch checkpoint is missing, corrupt, or does not fit the AST architecture."""


class LabelsError(CheckpointError, ModelError):
    """A labels file or list is missing, unreadable or does not fit the model's outputs.

    Both a :class:`CheckpointError` (at export) and a :class:`ModelError` (at run time):
    the same reader serves both sides.
    """


class ExportError(AstOnnxError, RuntimeError):
    """Exporting, optimizing or quantizing a model failed, or options do not combine."""


class DriftError(ExportError):
    """An exported model's outputs drift from PyTorch beyond the allowed thresholds."""


class OutputError(AstOnnxError, OSError):
    """An output path cannot be written: no such folder, read-only, a directory, too long a name."""


class ResumeError(AstOnnxError, ValueError):
    """A results file cannot be resumed: foreign or undecodable rows, or another model's rows."""


class MissingDependencyError(AstOnnxError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class FbankOptionsError(InvalidOptionError):
    """Filterbank / feature-extractor options are invalid or do not combine."""


class GateSpecError(InvalidOptionError):
    """A drift-limit specification (``--max-drift NAME=VALUE,...``) could not be parsed."""


class BenchError(AstOnnxError, ValueError):
    """Benchmark options do not fit together (a usage error: ast-bench exits 2)."""


class EvalSetError(AstOnnxError, ValueError):
    """An evaluation directory is missing, empty, or has a bad labels file."""


class StreamClosedError(AstOnnxError, RuntimeError):
    """Audio was pushed to a stream after ``flush()`` ended it."""


def item_error(error: Exception, item: str) -> AstOnnxError:
    """The error to report for one failed item of a batch, so that the batch goes on.

    The package's own errors are returned as they are; anything else (``MemoryError``,
    an unexpected exception from a library) becomes a :class:`ProcessingError` that
    names the item and the original type, chained to the original. ``KeyboardInterrupt``
    and ``SystemExit`` are not ``Exception`` and never reach here.

    Args:
        error: What the item raised.
        item: The item's name (a path), put in the message unless already there.
    """
    if isinstance(error, AstOnnxError):
        return error
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    where = "" if item in str(error) else f"{item}: "
    wrapped = ProcessingError(f"{where}unexpected {text}")
    wrapped.__cause__ = error
    return wrapped


class SampleRateWarning(UserWarning):
    """Samples were given without their sample rate and taken to be at the model's rate.

    ``Runtime.classify(array)`` without ``sample_rate`` cannot tell 48 kHz samples from
    16 kHz ones; passing ``sample_rate=`` (the samples' real rate) resamples them and
    silences this. ``warnings.simplefilter("error", SampleRateWarning)`` makes it an error.
    """


def require(module: str, extra: str, feature: str, hint: str = "") -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra.

    The one optional-import helper of the package: every optional dependency is imported
    through it, where it is used.

    Args:
        module: Module to import, e.g. ``"onnxruntime"``.
        extra: The ast-onnx extra that provides it, e.g. ``"cpu"``.
        feature: What needs it, used in the message.
        hint: Appended to the message (e.g. an alternative extra).
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(
            f"{feature} requires the '{module}' package: pip install \"ast-onnx[{extra}]\""
            + (f" {hint}" if hint else "")
        ) from e
