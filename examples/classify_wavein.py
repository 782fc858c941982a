"""Classify an audio file with a wave-in AST model: numpy + soundfile + onnxruntime only.

    python classify_wavein.py model-wavein.onnx dog.wav [--top-k 5]

A wave-in model (``ast-export --with-frontend model-wavein.onnx``) computes the Kaldi
fbank inside the graph: its input is the wave itself, ``waveform`` float32
[batch, samples] (mono, at the model's sample rate, scaled to [-1, 1]); its outputs are
``logits`` and ``scores`` (sigmoid or softmax already applied). Everything else a
program needs (labels, sample rate, window length) is in the model's metadata: one JSON
document under the key ``"ast_onnx"``. Nothing here imports ast_onnx, so the same steps
work from any language with an onnxruntime binding.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import onnxruntime as ort
import soundfile as sf


def read_model(path: str) -> tuple[ort.InferenceSession, dict]:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    if "ast_onnx" not in props:
        sys.exit(f"{path} has no 'ast_onnx' metadata: export it with ast-export --with-frontend")
    meta = json.loads(props["ast_onnx"])
    if meta.get("input_kind") != "waveform":
        sys.exit(f"{path} takes features, not waves: export it with ast-export --with-frontend")
    return session, meta


def window_lengths(frontend: dict) -> tuple[int, int, int]:
    """Samples of one fbank frame, of one model window (max_length frames), between windows."""
    sr, fb = frontend["sample_rate"], frontend["fbank_options"]
    frame = int(sr * 0.001 * fb["frame_length"])
    shift = int(sr * 0.001 * fb["frame_shift"])
    max_length = frontend["max_length"]
    return frame, frame + (max_length - 1) * shift, (max_length // 2) * shift


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("audio")
    parser.add_argument("--top-k", type=int, default=5)
    args = parser.parse_args()

    session, meta = read_model(args.model)
    labels, rate = meta["labels"], meta["frontend"]["sample_rate"]
    frame, window, hop = window_lengths(meta["frontend"])

    wave, file_rate = sf.read(args.audio, dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)  # mono
    if file_rate != rate:
        sys.exit(f"{args.audio} is at {file_rate} Hz; the model wants {rate} Hz: resample it")
    if len(wave) < frame:
        sys.exit(f"{args.audio} has {len(wave)} samples, fewer than one frame ({frame})")

    # One call per distinct length. Audio longer than one window: windows every `hop`
    # samples (half a window), the last one aligned to the end, all of the same length,
    # so one batch (as ast_onnx's Runtime does; its scores are the mean over windows).
    # (Never zero-pad a wave to batch it with longer ones: that changes its fbank.)
    if len(wave) <= window:
        batch = wave[None, :]
    else:
        starts = [*range(0, len(wave) - window, hop), len(wave) - window]
        batch = np.stack([wave[s : s + window] for s in starts])
    (scores,) = session.run(["scores"], {"waveform": np.ascontiguousarray(batch)})
    mean = scores.mean(axis=0)
    print(f"{args.audio}: {len(wave) / rate:.2f} s, {len(batch)} window(s)")
    for i in np.argsort(-mean)[: args.top_k]:
        print(f"  {mean[i]:.3f}  {labels[i]}")


if __name__ == "__main__":
    main()
