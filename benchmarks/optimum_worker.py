"""optimum's AST route, timed on request: run by benchmarks/runtime_table.py in optimum's venv.

optimum-onnx 0.1 pins transformers < 4.58, so it lives in an environment of its own
(``AST_BENCH_OPTIMUM_PYTHON``); this worker keeps its model loaded and answers "run" with
the seconds one ``pipeline("audio-classification")`` call took, so that its timings
interleave round by round with the other variants in the parent's process.

    python optimum_worker.py CKPT WORKDIR fp32|int8 FEATURES.npy CLIP.npy LOGITS.npy

fp32: ``ORTModelForAudioClassification.from_pretrained(export=True)`` (optimum's
optimizer refuses AST, so it is left out). int8: ``ORTQuantizer`` dynamic, with
``AutoQuantizationConfig.avx512_vnni`` on a VNNI CPU, else ``avx2``. Prints
``ready`` once the model is loaded and its logits for FEATURES.npy are saved.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np


def _has_vnni() -> bool:
    try:
        return "avx512_vnni" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def load(checkpoint: str, work: Path, variant: str):
    from optimum.onnxruntime import ORTModelForAudioClassification, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    fp32_dir = work / "optimum-fp32"
    if not (fp32_dir / "model.onnx").is_file():
        ORTModelForAudioClassification.from_pretrained(checkpoint, export=True).save_pretrained(
            fp32_dir
        )
    if variant == "fp32":
        return ORTModelForAudioClassification.from_pretrained(fp32_dir)
    int8_dir = work / "optimum-int8"
    if not (int8_dir / "model_quantized.onnx").is_file():
        scheme = AutoQuantizationConfig.avx512_vnni if _has_vnni() else AutoQuantizationConfig.avx2
        quantizer = ORTQuantizer.from_pretrained(fp32_dir)
        quantizer.quantize(
            save_dir=int8_dir, quantization_config=scheme(is_static=False, per_channel=False)
        )
    return ORTModelForAudioClassification.from_pretrained(
        int8_dir, file_name="model_quantized.onnx"
    )


def main() -> None:
    checkpoint, work, variant, features, clip, logits_out = sys.argv[1:7]
    import torch
    from transformers import ASTFeatureExtractor, pipeline

    model = load(checkpoint, Path(work), variant)
    x = torch.from_numpy(np.load(features))
    with torch.inference_mode():
        logits = np.concatenate(
            [model(input_values=x[i : i + 1]).logits.numpy() for i in range(len(x))]
        )
    np.save(logits_out, logits)
    extractor = ASTFeatureExtractor.from_pretrained(checkpoint)
    classify = pipeline(
        "audio-classification",
        model=model,
        feature_extractor=extractor,
        function_to_apply="sigmoid",
    )
    wave = np.load(clip)
    classify(wave)  # warm-up
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        start = time.perf_counter()
        classify(wave)
        print(f"{time.perf_counter() - start:.6f}", flush=True)


if __name__ == "__main__":
    main()
