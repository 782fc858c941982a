"""The prepared GPU check: carry wheels to a GPU machine in parts, then verify and measure.

``tools/gpu_prepare.sh`` (here) downloads the wheels and packs them with :mod:`.payload`;
``tools/gpu_check.sh`` (there) reassembles and installs them, then runs the steps of
:mod:`.steps` under the budgets of :mod:`.plan` and writes the report of :mod:`.report`.
Standard library only at import time: the no-GPU path must answer in seconds on any
Python, before numpy or onnxruntime are importable.
"""
