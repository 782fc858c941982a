"""Triton Inference Server: model repositories, the code Triton runs, a local dev server.

- written at build time: :mod:`.repository` (:func:`write_triton_repo`), :mod:`.config`,
  :mod:`.python_entry`, :mod:`.ensemble`, staged writes in :mod:`.repo_files`;
- run inside Triton's python backend: :mod:`.backend_model` (a Runtime, raw audio in;
  imported by the entry's ``model.py``), :mod:`.steps` (the ensemble's frontend and
  postprocess), :mod:`.requests` (the request checks both share);
- the local server: :mod:`.server` (``ast-triton serve``).

Built on the runtime only; writing repositories needs onnx (``pip install "ast-onnx[triton]"``),
never torch.
"""

from __future__ import annotations

from ast_onnx.triton.config import TritonConfig
from ast_onnx.triton.repository import TritonRepo, write_triton_repo

__all__ = ["TritonConfig", "TritonRepo", "write_triton_repo"]
