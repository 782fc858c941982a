"""Untrusted model graphs: operators no export contains are refused at load, and a running
model call stops on Ctrl-C (exit 130) or after ``run_timeout``.

References: the onnx package's own parser (for the operator lists), the toy model's
logits computed in numpy (``runtime_toy.toy_logits``), and the exit status and wall time
of a real ``ast-classify`` process.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO
from helpers.hostile_files import looping_model, write_noise
from helpers.runtime_toy import toy_logits, toy_model

from ast_onnx.errors import InvalidOptionError, ModelError, ModelTimeoutError
from ast_onnx.runtime import Runtime, RuntimeOptions
from ast_onnx.runtime import graph_ops as graph_ops_module
from ast_onnx.runtime.graph_ops import ALLOWED_OPS, graph_ops

onnx = pytest.importorskip("onnx")
SRC = str(REPO / "src")


def onnx_ops(path: Path) -> set[tuple[str, str]]:
    """Every (domain, op_type) of a model, listed with the onnx package (the reference)."""
    model = onnx.load(str(path), load_external_data=False)
    found: set[tuple[str, str]] = set()

    def walk(nodes) -> None:
        for node in nodes:
            found.add(("" if node.domain in ("", "ai.onnx") else node.domain, node.op_type))
            for attr in node.attribute:
                for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    walk(g.node)

    walk(model.graph.node)
    for function in model.functions:
        walk(function.node)
    return found


def run_cli(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC}
    cmd = [sys.executable, "-m", "ast_onnx.cli.classify", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


# ----- listing the operators -----


def test_the_walker_lists_what_onnx_lists_in_subgraphs_and_functions(tmp_path):
    from onnx import TensorProto, helper

    def tensor(name):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [1])

    inner = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "inner", [], [tensor("y")])
    deeper = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=inner, else_branch=inner)],
        "deeper",
        [],
        [tensor("y")],
    )
    nodes = [
        helper.make_node("If", ["c"], ["a"], then_branch=deeper, else_branch=inner),
        helper.make_node("Abs", ["a"], ["b"], domain="ai.onnx"),
        helper.make_node("Twice", ["b"], ["z"], domain="my.functions"),
    ]
    function = helper.make_function(
        "my.functions",
        "Twice",
        ["t"],
        ["u"],
        [helper.make_node("Sum", ["t", "t"], ["u"])],
        [helper.make_opsetid("", 17)],
    )
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, []), tensor("x")],
        [tensor("z")],
    )
    model = helper.make_model(
        graph,
        functions=[function],
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.functions", 1)],
    )
    onnx.save(model, tmp_path / "m.onnx")
    got = graph_ops(tmp_path / "m.onnx")
    assert got == onnx_ops(tmp_path / "m.onnx")
    assert got == {("", "If"), ("", "Neg"), ("", "Abs"), ("", "Sum"), ("my.functions", "Twice")}


def test_the_walk_is_bounded_in_fields(tmp_path, monkeypatch):
    path = toy_model(tmp_path / "toy.onnx")
    assert graph_ops(path) == onnx_ops(path)
    monkeypatch.setattr(graph_ops_module, "MAX_FIELDS", 3)
    with pytest.raises(ModelError, match="more than 3 protobuf fields"):
        graph_ops(path)


# ----- refused at load -----


@pytest.mark.parametrize(
    ("op", "shown"),
    [
        (("", "Loop"), "'Loop'"),
        (("", "Identity"), "'Identity'"),
        (("evil.ops", "Relu"), "'evil.ops.Relu'"),
    ],
)
def test_a_graph_with_an_operator_no_export_contains_is_refused_at_load(tmp_path, op, shown):
    path = looping_model(tmp_path / "m.onnx", op=op)
    start = time.perf_counter()
    with pytest.raises(ModelError, match="allow_any_ops") as info:
        Runtime(path, providers="cpu")
    assert time.perf_counter() - start < 1.0
    assert shown in str(info.value) and str(path) in str(info.value)


def test_allow_any_ops_loads_a_trusted_graph(tmp_path):
    path = looping_model(tmp_path / "m.onnx", trips=3)
    rt = Runtime(path, providers="cpu", allow_any_ops=True)
    x = np.random.default_rng(0).standard_normal((2, 100, 128)).astype(np.float32)
    np.testing.assert_allclose(rt.logits(x), toy_logits(path, x) + 3.0, rtol=1e-5, atol=1e-4)


def test_the_cli_refuses_a_looping_model_at_once(tmp_path):
    model = looping_model(tmp_path / "loop.onnx")
    audio = write_noise(tmp_path / "a.wav", 1.0)
    done = run_cli(str(model), str(audio), timeout=30)  # before: never returned
    assert done.returncode == 1
    assert "'Loop'" in done.stderr and "--allow-any-ops" in done.stderr


# ----- every export passes -----


@pytest.fixture(scope="module")
def exports(small_onnx, small_multilabel_checkpoint, small_checkpoint, tmp_path_factory):
    """One file of each graph form ast-onnx writes (the fused fp32 one is ``small_onnx``)."""
    import soundfile as sf
    from helpers.signals import SIGNALS

    from ast_onnx.export import export_frontend, export_model

    out = tmp_path_factory.mktemp("variants")
    calib = out / "calib"
    calib.mkdir()
    for name in ("speech", "noise", "tone"):
        sf.write(calib / f"{name}.wav", SIGNALS[name](), 16000)
    ml = small_multilabel_checkpoint
    variants = {
        "fp32-noopt": (small_checkpoint, {"optimize": False}),
        "wavein-fp16-sigmoid": (ml, {"with_frontend": True, "precision": "fp16"}),
        "wavein-int8-dynamic": (small_checkpoint, {"with_frontend": True, "precision": "int8"}),
        "int8-static": (small_checkpoint, {"precision": "int8", "calibrate": calib}),
        "int8-static-qdq": (
            small_checkpoint,
            {"precision": "int8", "calibrate": calib, "int8_format": "qdq"},
        ),
    }
    paths = {"fp32": Path(small_onnx)}
    for name, (checkpoint, options) in variants.items():
        paths[name] = export_model(checkpoint, out / f"{name}.onnx", **options).path
    frontend = export_frontend(out / "frontend.onnx")
    paths["frontend"] = Path(getattr(frontend, "path", frontend))
    return paths


def test_the_allowlist_is_exactly_what_the_exports_contain(exports):
    seen: set[tuple[str, str]] = set()
    for name, path in exports.items():
        ops = graph_ops(path)
        assert ops == onnx_ops(path), name
        assert ops <= ALLOWED_OPS, (name, sorted(ops - ALLOWED_OPS))
        seen |= ops
    assert seen == ALLOWED_OPS, sorted(ALLOWED_OPS - seen)
    assert not {op for _, op in ALLOWED_OPS} & {"Loop", "Scan", "If"}
    for name, path in exports.items():
        if name != "frontend":
            Runtime(path, providers="cpu")  # loads with the check on


# ----- stopped while running -----


def test_run_timeout_stops_a_call_and_each_file_gets_its_error(tmp_path):
    path = looping_model(tmp_path / "m.onnx")
    rt = Runtime(path, providers="cpu", allow_any_ops=True, run_timeout=0.3, batch_size=1)
    start = time.perf_counter()
    with pytest.raises(ModelTimeoutError, match=r"run_timeout=0\.3"):
        rt.classify(np.zeros(16000, np.float32))
    assert time.perf_counter() - start < 2.0
    files = [write_noise(tmp_path / f"{i}.wav", 0.5, seed=i) for i in range(2)]
    rows = list(rt.classify_files(files))
    assert [p for p, _ in rows] == [str(f) for f in files]
    assert all(isinstance(r, ModelTimeoutError) for _, r in rows)


def test_a_call_within_its_run_timeout_gives_the_models_output(tmp_path):
    path = toy_model(tmp_path / "toy.onnx")
    rt = Runtime(path, providers="cpu", run_timeout=30)
    x = np.random.default_rng(1).standard_normal((3, 100, 128)).astype(np.float32)
    np.testing.assert_allclose(rt.logits(x), toy_logits(path, x), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, "1", True])
def test_run_timeout_must_be_positive_seconds(bad):
    with pytest.raises(InvalidOptionError, match="run_timeout"):
        RuntimeOptions(run_timeout=bad)


def test_run_timeout_is_refused_for_openvino_which_cannot_stop_a_call(tmp_path):
    path = toy_model(tmp_path / "toy.onnx")
    with pytest.raises(InvalidOptionError, match="run_timeout applies to onnxruntime"):
        Runtime(path, providers="openvino", run_timeout=1.0)


def test_ctrl_c_stops_a_running_model_and_exits_130(tmp_path):
    model = looping_model(tmp_path / "loop.onnx")
    audio = write_noise(tmp_path / "a.wav", 1.0)
    env = {**os.environ, "PYTHONPATH": SRC}
    cmd = [sys.executable, "-m", "ast_onnx.cli.classify", str(model), str(audio)]
    proc = subprocess.Popen(
        [*cmd, "--allow-any-ops", "--provider", "cpu", "-v"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        for line in proc.stderr:  # the model is loaded: the next thing is its run
            if "loaded" in line:
                break
        time.sleep(0.5)
        assert proc.poll() is None  # the Loop is running
        os.kill(proc.pid, signal.SIGINT)
        start = time.perf_counter()
        rc = proc.wait(timeout=10)
        elapsed = time.perf_counter() - start
    finally:
        proc.kill()
        proc.wait()
    assert rc == 130
    assert elapsed < 2.0
