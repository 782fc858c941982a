"""Print the bundled sample WAV paths, separated by spaces."""

from ast_onnx.data import sample_paths

print(" ".join(str(path) for path in sample_paths()))
