"""Wave-in models: the in-graph fbank (:mod:`.frontend_graph`) joined to an AST model.

A wave-in model takes ``waveform`` float32 [batch, samples] at the model's sample rate
(dynamic batch and length) and returns ``logits`` and ``scores`` (the model's sigmoid
or softmax). The frontend is always float32: fp16 and int8 models are converted first
and the fp32 frontend is put in front of them, so their ``input_values`` are computed
exactly as for the fp32 model.

What the graph accepts (the Runtime checks this before feeding it; a caller of the
bare graph must do the same): a 2-D float32 array ``[batch, samples]`` of mono audio
at the model's sample rate, scaled to [-1, 1]; items of one call have the same length
(pad nothing: zero-padding adds silent frames where the numpy frontend adds
``padding_value`` rows, so run different lengths in separate calls). Fewer samples
than one frame (400 at 16 kHz) give 0 frames, i.e. all padding; samples beyond one
model window (``max_length`` frames) are ignored; NaN/Inf propagate to the outputs.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ast_onnx.errors import DriftError, ExportError, require
from ast_onnx.frontend import FeatureExtractor
from ast_onnx.frontend.graph import (
    FRONTEND_INPUT,
    FRONTEND_OUTPUT,
    PREFIX,
    as_extractor,
    build_frontend,
    frontend_nodes,
    waveform_input,
)
from ast_onnx.metadata import LOGITS, SCORES, Activation, ModelMetadata, opset_of
from ast_onnx.progress import quiet_logs
from ast_onnx.quality import FRONTEND_MAX_ABS, SCORES_MAX_ABS, violations
from ast_onnx.runtime.providers import CPU
from ast_onnx.runtime.scoring import activate

logger = logging.getLogger(__name__)

SCORES_OUTPUT = SCORES
LOGITS_OUTPUT = LOGITS


#: What a frontend may be given as: the extractor, its ``to_dict()``, or None (AST defaults).
FrontendSpec = FeatureExtractor | dict[str, Any] | None


def attach_frontend(model: Any, frontend: FrontendSpec, activation: Activation) -> Any:
    """Put the fp32 frontend in front of a feature-input AST model and add ``scores``.

    Args:
        model: ``onnx.ModelProto`` with input ``input_values`` and output ``logits``
            (any precision with float32 I/O).
        frontend: ``FeatureExtractor`` or its ``to_dict()`` (the model's metadata frontend).
        activation: ``"sigmoid"`` or ``"softmax"``, applied to ``logits`` as ``scores``.

    Returns:
        A new ``onnx.ModelProto``: ``waveform`` -> ``logits``, ``scores``.
    """
    onnx = require("onnx", "export", "The in-graph frontend")
    helper = onnx.helper
    graph = model.graph
    weights = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    if [i.name for i in inputs] != [FRONTEND_OUTPUT]:
        raise ExportError(f"expected one model input {FRONTEND_OUTPUT!r}, got {inputs}")
    if inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ExportError(f"input {FRONTEND_OUTPUT!r} must be float32 to take the fp32 frontend")
    logits = next((o for o in graph.output if o.name == LOGITS_OUTPUT), None)
    if logits is None:
        raise ExportError(f"the model has no {LOGITS_OUTPUT!r} output")
    taken = _names(graph) & {SCORES_OUTPUT, FRONTEND_INPUT}
    taken |= {n for n in _names(graph) if n.startswith(PREFIX)}
    if taken:
        raise ExportError(f"the model already uses names the frontend needs: {sorted(taken)}")
    nodes, inits = frontend_nodes(frontend, opset_of(model))
    if activation == "softmax":
        act = helper.make_node("Softmax", [LOGITS_OUTPUT], [SCORES_OUTPUT], axis=-1)
    elif activation == "sigmoid":
        act = helper.make_node("Sigmoid", [LOGITS_OUTPUT], [SCORES_OUTPUT])
    else:
        raise ExportError(f"activation must be 'sigmoid' or 'softmax', got {activation!r}")
    act.name = f"{PREFIX}{activation}"
    scores = onnx.ValueInfoProto()
    scores.CopyFrom(logits)
    scores.name = SCORES_OUTPUT
    new_graph = helper.make_graph(
        [*nodes, *graph.node, act],
        graph.name,
        [waveform_input(helper)],
        [*graph.output, scores],
        initializer=[*inits, *graph.initializer],
        value_info=list(graph.value_info),
        sparse_initializer=list(graph.sparse_initializer),
    )
    out = onnx.ModelProto()
    out.ir_version = model.ir_version
    out.opset_import.extend(model.opset_import)
    out.producer_name, out.producer_version = model.producer_name, model.producer_version
    out.domain, out.model_version, out.doc_string = (
        model.domain,
        model.model_version,
        model.doc_string,
    )
    out.functions.extend(model.functions)
    out.metadata_props.extend(model.metadata_props)
    out.graph.CopyFrom(new_graph)
    return out


def add_frontend(
    built: Path, work: Path, loaded: Any, gates: dict[str, float] | None, record: dict[str, Any]
) -> Path:
    """Write the wave-in version of the model ``built`` into ``work``; verify it.

    Args:
        built: The feature-input model (any precision).
        work: Scratch directory.
        loaded: The :class:`~ast_onnx.export.checkpoint.LoadedCheckpoint`.
        gates: The export's drift gates (their ``abs``/``rel`` bound the logit difference
            to the feature-input model); None skips the verification.
        record: The export's verification record; gets the ``"wavein"`` entry.

    Returns:
        Path of the wave-in model.
    """
    onnx = require("onnx", "export", "The in-graph frontend")
    fe = as_extractor(loaded.frontend)  # once: the graph and its verification share it
    wave = attach_frontend(onnx.load(str(built)), fe, loaded.activation)
    target = work / "wavein.onnx"
    onnx.save_model(wave, str(target))
    if gates is not None:
        record["wavein"] = verify_wavein(target, built, fe, loaded.activation, gates)
    return target


def wavein_metadata(metadata: ModelMetadata) -> ModelMetadata:
    """``metadata`` of the feature-input model, rewritten for its wave-in version."""
    extra = {
        **metadata.extra,
        "frontend_precision": "fp32",
        "outputs": [LOGITS_OUTPUT, SCORES_OUTPUT],
    }
    return replace(metadata, input_kind="waveform", input_name=FRONTEND_INPUT, extra=extra)


def _names(graph: Any) -> set[str]:
    names = {i.name for i in graph.input} | {o.name for o in graph.output}
    names |= {i.name for i in graph.initializer} | {v.name for v in graph.value_info}
    for node in graph.node:
        names.update(node.output)
        names.add(node.name)
    return names


def verification_waves(frontend: FrontendSpec, seed: int = 0) -> dict[str, np.ndarray]:
    """Waves of several lengths (one window, shorter, longer, under one frame)."""
    fe = as_extractor(frontend)
    sr, n = fe.sample_rate, fe.window_samples
    rng = np.random.default_rng(seed)
    t = np.arange(n + 1000) / sr
    tone = 0.5 * np.sin(2 * np.pi * 440.0 * t) + 0.05 * np.sin(2 * np.pi * 3000.0 * t)
    noise = 0.1 * rng.standard_normal(n + 1000)
    waves = {
        "tone": tone[:n],
        "noise": noise[:n],
        "tone_short": tone[: n // 3],
        "noise_long": noise,
        "under_one_frame": noise[: fe.options.window_size // 2],
    }
    return {k: v.astype(np.float32) for k, v in waves.items()}


def verify_wavein(
    wave_model: Any,
    feature_model: str | Path,
    frontend: FrontendSpec,
    activation: Activation,
    gates: dict[str, float],
) -> dict[str, Any]:
    """Check a wave-in model against the numpy frontend + the feature-input model.

    Args:
        wave_model: The wave-in ``onnx.ModelProto`` (or a path).
        feature_model: The feature-input model it was built from.
        frontend: The model's frontend (``FeatureExtractor`` or dict).
        activation: The model's activation, to check ``scores``.
        gates: Drift gates of the precision: ``abs`` bounds the largest logit
            difference, ``rel`` the same divided by the largest reference logit.

    Returns:
        The record stored under ``verification["wavein"]``.

    Raises:
        DriftError: The in-graph ``input_values`` or the logits differ beyond the gates.
    """
    fe = as_extractor(frontend)
    wave_sess, feat_sess, front = _sessions(wave_model, feature_model, fe)
    record = _measure(wave_sess, feat_sess, front, fe, activation)
    logit_gates = {k: float(v) for k, v in gates.items() if k in ("abs", "rel")}
    record["gates"] = {
        "input_values": FRONTEND_MAX_ABS,
        **{f"logits_{k}": v for k, v in logit_gates.items()},
    }
    measured = {"abs": record["logits_max_abs"], "rel": record["logits_max_rel"]}
    failures = [
        *(
            f"input_values {v}"
            for v in violations({"abs": record["input_values_max_abs"]}, {"abs": FRONTEND_MAX_ABS})
        ),
        *(f"logits_{v}" for v in violations(measured, logit_gates)),
        *(
            f"scores vs {activation}(logits) {v}"
            for v in violations({"abs": record["scores_max_abs"]}, {"abs": SCORES_MAX_ABS})
        ),
    ]
    record["passed"] = not failures
    logger.info(
        "wave-in verification: input_values %.3g, logits %.3g",
        record["input_values_max_abs"],
        record["logits_max_abs"],
    )
    if failures:
        raise DriftError(
            "the wave-in model differs from numpy frontend + model: " + "; ".join(failures)
        )
    return record


def _sessions(
    wave_model: Any, feature_model: str | Path, fe: FeatureExtractor
) -> tuple[Any, Any, Any]:
    """CPU sessions of the wave-in model, the feature-input model and the frontend alone."""
    ort = require("onnxruntime", "cpu", "Export verification")
    source = (
        str(wave_model) if isinstance(wave_model, (str, Path)) else wave_model.SerializeToString()
    )
    try:
        wave_sess = ort.InferenceSession(source, providers=[CPU])
        feat_sess = ort.InferenceSession(str(feature_model), providers=[CPU])
        front = ort.InferenceSession(build_frontend(fe).SerializeToString(), providers=[CPU])
    except Exception as e:  # onnxruntime raises its own types
        raise ExportError(f"onnxruntime cannot load the wave-in model: {e}") from e
    return wave_sess, feat_sess, front


def _measure(
    wave_sess: Any, feat_sess: Any, front: Any, fe: FeatureExtractor, activation: Activation
) -> dict:
    """Differences of the wave-in model to the numpy frontend + feature-input model."""
    feat_in = feat_sess.get_inputs()[0].name
    waves = verification_waves(fe)
    input_diff, logit_diff, score_diff, scale = {}, {}, {}, 0.0
    for name, wave in waves.items():
        batch = wave[None]
        numpy_feats = numpy_features(fe, batch)
        graph_feats = front.run(None, {FRONTEND_INPUT: batch})[0]
        input_diff[name] = float(np.abs(graph_feats - numpy_feats).max())
        ref = feat_sess.run(None, {feat_in: numpy_feats})[0]
        logits, scores = wave_sess.run([LOGITS_OUTPUT, SCORES_OUTPUT], {FRONTEND_INPUT: batch})
        logit_diff[name] = float(np.abs(logits - ref).max())
        scale = max(scale, float(np.abs(ref).max()))
        score_diff[name] = float(np.abs(scores - activate(logits, activation)).max())
    same = np.stack([waves["tone"], waves["noise"], waves["tone"][::-1].copy()])
    batched = wave_sess.run([LOGITS_OUTPUT], {FRONTEND_INPUT: same})[0]
    single = np.concatenate(
        [wave_sess.run([LOGITS_OUTPUT], {FRONTEND_INPUT: w[None]})[0] for w in same]
    )
    return {
        "reference": "numpy frontend + feature-input model",
        "provider": CPU,
        "input_values_max_abs": max(input_diff.values()),
        "logits_max_abs": max(logit_diff.values()),
        "logits_max_rel": max(logit_diff.values()) / (scale or 1.0),
        "scores_max_abs": max(score_diff.values()),
        "batch_max_abs": float(np.abs(batched - single).max()),
        "per_input": {k: {"input_values": input_diff[k], "logits": logit_diff[k]} for k in waves},
    }


def numpy_features(fe: Any, batch: np.ndarray) -> np.ndarray:
    # The under-one-frame wave is on purpose: no "all padding" warning for it.
    with quiet_logs(("ast_onnx.frontend.features",)):
        return fe(batch).input_values
