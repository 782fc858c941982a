"""Find similar sounds and near-duplicates in a folder with AST embeddings.

    python similar_sounds.py model.onnx FOLDER [--query clip.wav] [--top-k 5] [--duplicates 0.98]

The model needs an embedding output (``ast-export --outputs logits,embedding``). Every
audio file under FOLDER is embedded once (``Runtime.embed_files``, L2-normalized, so a
dot product is the cosine similarity); then

- with ``--query``: the ``--top-k`` files most similar to the query clip;
- otherwise: each file's nearest neighbour, then the near-duplicates: pairs at or above
  ``--duplicates`` cosine similarity among each file's ``--top-k`` neighbours.

Search is a NumPy matrix product, exact and fast up to some 100,000 files. With
``faiss-cpu`` installed (``pip install faiss-cpu``) it goes through FAISS's
``IndexFlatIP`` instead (exact inner product, the same results): the place to swap in
an approximate index (IVF, HNSW) for millions of vectors.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ast_onnx import Runtime
from ast_onnx.frontend import AUDIO_EXTENSIONS
from ast_onnx.frontend.files import find_audio_files


def embed_folder(rt: Runtime, folder: str) -> tuple[list[str], np.ndarray]:
    """Paths and unit vectors [files, hidden] of the audio files under ``folder``."""
    files, problems = find_audio_files([folder], AUDIO_EXTENSIONS)
    for message in problems:
        print(f"skipped: {message}", file=sys.stderr)
    paths, vectors = [], []
    for path, result in rt.embed_files(files, normalize=True):
        if isinstance(result, Exception):  # one bad file never stops the others
            print(f"skipped: {result}", file=sys.stderr)
            continue
        paths.append(path)
        vectors.append(result.vector)
    size = rt.embedding_size or 0
    return paths, np.stack(vectors) if vectors else np.zeros((0, size), np.float32)


def search(index_vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(similarities, indices)`` [queries, k] of the ``k`` best matches, best first."""
    k = min(k, len(index_vectors))
    try:
        import faiss
    except ImportError:
        sims = queries @ index_vectors.T
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(sims, top, axis=1), top
    index = faiss.IndexFlatIP(index_vectors.shape[1])
    index.add(np.ascontiguousarray(index_vectors, dtype=np.float32))
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("folder")
    p.add_argument("--query", help="an audio clip to find similar sounds to")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--duplicates", type=float, default=0.98, help="cosine for near-duplicates")
    args = p.parse_args(argv)

    rt = Runtime(args.model)
    paths, vectors = embed_folder(rt, args.folder)
    if not paths:
        print("no audio files could be embedded", file=sys.stderr)
        return 1
    if args.query:
        query = rt.embed(args.query, normalize=True)[None, :]
        sims, idx = search(vectors, query, args.top_k)
        for s, i in zip(sims[0], idx[0], strict=True):
            print(f"{s:.4f}  {paths[i]}")
        return 0
    sims, idx = search(vectors, vectors, args.top_k + 1)  # each file also finds itself
    duplicates = set()
    for i, path in enumerate(paths):
        found = [(float(s), int(j)) for s, j in zip(sims[i], idx[i], strict=True) if j != i]
        if found:
            print(f"{found[0][0]:.4f}  {path}  ->  {paths[found[0][1]]}")
        duplicates |= {(min(i, j), max(i, j), s) for s, j in found if s >= args.duplicates}
    for i, j, s in sorted(duplicates, key=lambda d: -d[2]):
        print(f"near-duplicate {s:.4f}  {paths[i]}  =  {paths[j]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
