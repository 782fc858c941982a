"""Deprecated package: its modules moved to :mod:`ast_onnx.export`, :mod:`ast_onnx.model_files`
and :mod:`ast_onnx.tuning`. Only the documented ``ast_onnx.graph.thresholds`` remains, as an alias.
"""
