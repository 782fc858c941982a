"""The lean inference runtime: numpy + scipy + onnxruntime, no torch.

from ast_onnx.runtime import Runtime
rt = Runtime("model.onnx")             # providers="auto": TensorRT > CUDA > CPU
result = rt.classify("dog.wav")        # Classification: .labels, .scores, .windows
vector = rt.embed("dog.wav")           # float32 [hidden] (models with an embedding output)
stream = rt.stream()                   # .push(chunk) -> StreamResult(.windows, .events)
"""

from __future__ import annotations

from ast_onnx.runtime.embeddings import Embedding
from ast_onnx.runtime.events import Event, EventDetector, EventOptions
from ast_onnx.runtime.options import RuntimeOptions
from ast_onnx.runtime.providers import PROVIDER_CHAINS, PROVIDER_NAMES
from ast_onnx.runtime.results import Classification, Prediction, WindowScore
from ast_onnx.runtime.runtime import Runtime
from ast_onnx.runtime.scoring import AGGREGATIONS, WindowScorer
from ast_onnx.runtime.stream import Stream, StreamResult

__all__ = [
    "AGGREGATIONS",
    "PROVIDER_CHAINS",
    "PROVIDER_NAMES",
    "Classification",
    "Embedding",
    "Event",
    "EventDetector",
    "EventOptions",
    "Prediction",
    "Runtime",
    "RuntimeOptions",
    "Stream",
    "StreamResult",
    "WindowScore",
    "WindowScorer",
]
