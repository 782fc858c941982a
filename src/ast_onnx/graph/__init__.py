"""ONNX graph work that needs onnx and onnxruntime but never torch.

Model files (single file or external data, written atomically), onnxruntime's
transformer fusions, fp16 conversion and int8 quantization, and the wave-in
attachment of the in-graph fbank. The export side (:mod:`ast_onnx.export`) sequences
these steps after ``torch.onnx.export``; they also work on any AST ONNX file.
"""
