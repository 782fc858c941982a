"""int8 models: quantization (dynamic and static), calibration, node selection, the gate.

- :mod:`.quantize`: dynamic int8, static int8 in two forms, calibration audio and features;
- :mod:`.static`: the integer form's calibration reader and onnxruntime's integer kernels;
- :mod:`.select`: per-node sensitivity and the choice of nodes kept float32;
- :mod:`.gate`: static int8 held to the drift gate against PyTorch (imports torch lazily).

Everything but :mod:`.gate` works on any AST ONNX file (onnx + onnxruntime, no torch).
"""
