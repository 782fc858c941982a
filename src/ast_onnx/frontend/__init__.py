"""Torch-free AST frontend: audio loading, Kaldi fbank and feature extraction.

Needs numpy, scipy and soundfile only.
"""

from __future__ import annotations

from ast_onnx.frontend.audio import (
    AUDIO_EXTENSIONS,
    DEFAULT_MAX_SECONDS,
    MAX_PEAK,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    SAMPLE_RATE,
    check_max_seconds,
    load_audio,
    prepare_audio,
    read_audio,
    resample,
)
from ast_onnx.frontend.fbank import (
    WINDOW_TYPES,
    FbankOptions,
    FbankOptionsError,
    KaldiFbank,
    fbank,
)
from ast_onnx.frontend.features import (
    AUDIOSET_MEAN,
    AUDIOSET_STD,
    FeatureExtractor,
    Features,
    read_norm_stats,
)

__all__ = [
    "AUDIOSET_MEAN",
    "AUDIOSET_STD",
    "AUDIO_EXTENSIONS",
    "DEFAULT_MAX_SECONDS",
    "MAX_PEAK",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "SAMPLE_RATE",
    "WINDOW_TYPES",
    "FbankOptions",
    "FbankOptionsError",
    "FeatureExtractor",
    "Features",
    "KaldiFbank",
    "check_max_seconds",
    "fbank",
    "load_audio",
    "prepare_audio",
    "read_audio",
    "read_norm_stats",
    "resample",
]
