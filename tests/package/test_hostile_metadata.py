"""Hostile model metadata: every forged value is refused clearly, in bounded time and memory.

The bombs (values that used to make the frontend allocate gigabytes, or JSON that blew
the recursion limit) are loaded in a fresh interpreter, both by ``Runtime`` and by
``write_triton_repo``, and the child reports its own peak RSS (``VmHWM`` of
``/proc/self/status``: unlike ``ru_maxrss``, it starts afresh at ``exec`` and does not
inherit the forking pytest process's peak) and the load's wall time; the bounds
asserted are generous (2 s, 500 MB: a bare import of the runtime is ~95 MB). The child
runs under a 4 GiB address-space limit, so that a regression fails the test instead of
taking the machine's memory.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers.runtime_toy import forge_metadata, metadata_of, toy_model

from ast_onnx.errors import MetadataError
from ast_onnx.metadata import (
    MAX_LABEL_LENGTH,
    MAX_LABELS,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    ModelMetadata,
)
from ast_onnx.runtime import Runtime

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

MAX_SECONDS = 2.0
MAX_RSS_MB = 500.0

_PROBE = r"""
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from ast_onnx.errors import AstOnnxError
from ast_onnx.runtime import Runtime
from ast_onnx.triton.repository import write_triton_repo
how, path, repo = sys.argv[1:4]
start = time.perf_counter()
try:
    if how == "runtime":
        Runtime(path, providers="cpu")
    else:
        write_triton_repo(path, repo, kind="cpu")
    error = None
except BaseException as e:
    error = {"type": type(e).__name__, "ours": isinstance(e, AstOnnxError), "message": str(e)}
seconds = time.perf_counter() - start
def peak_rss_mb():
    try:
        with open("/proc/self/status") as f:
            kb = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
        return int(kb) / 1024
    except (OSError, StopIteration):  # not Linux: ru_maxrss (may include the parent's)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
rss_mb = peak_rss_mb()
print(json.dumps({"error": error, "seconds": seconds, "rss_mb": rss_mb}))
"""


def probe(how: str, path, repo) -> dict:
    """Load ``path`` with ``Runtime`` or ``write_triton_repo`` in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, how, str(path), str(repo)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _with_frontend(**changes):
    def edit(meta):
        meta["frontend"].update({k: v for k, v in changes.items() if k != "fbank_options"})
        meta["frontend"]["fbank_options"].update(changes.get("fbank_options", {}))
        return json.dumps(meta)

    return edit


def _nested(depth: int):
    def edit(meta):  # inside a valid document: only the nesting is wrong
        text = json.dumps(meta)
        return text[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"

    return edit


#: name -> (edit of the toy model's metadata dict -> JSON text, words the error must hold)
BOMBS = {
    "num_mel_bins=1e6": (_with_frontend(num_mel_bins=1_000_000), "num_mel_bins"),
    "sample_rate=1e12": (_with_frontend(sample_rate=1e12), "sample_rate must be between"),
    "frame_length=1e9": (_with_frontend(fbank_options={"frame_length": 1e9}), "frame_length"),
    "max_length=1e9": (_with_frontend(max_length=10**9), "max_length"),
    "nested 100000 deep": (_nested(100_000), "nests deeper"),
    "nested 900 deep": (_nested(900), "nests deeper"),  # parses, then copies recurse
}


@pytest.mark.parametrize("how", ["runtime", "triton"])
@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_metadata_bombs_are_refused_fast_in_bounded_memory(toy, tmp_path, bomb, how):
    edit, words = BOMBS[bomb]
    path = tmp_path / "bomb.onnx"
    path.write_bytes(toy.read_bytes())
    forge_metadata(path, edit(metadata_of(toy)))
    got = probe(how, path, tmp_path / "repo")
    assert got["error"] is not None, f"{bomb} was accepted"
    assert got["error"]["type"] == "MetadataError", got["error"]
    assert words in got["error"]["message"] and str(path) in got["error"]["message"]
    assert got["seconds"] < MAX_SECONDS, got
    assert got["rss_mb"] < MAX_RSS_MB, got
    assert not (tmp_path / "repo" / "bomb").exists()


def test_the_largest_frontend_allowed_is_itself_bounded(tmp_path):
    """The limits are inclusive and safe: 1024 mel bins over a 16384-sample window loads."""
    path = toy_model(tmp_path / "big.onnx", frames="frames", mel=1024)
    meta = metadata_of(path)
    meta["frontend"].update(max_length=16_384)
    meta["frontend"]["fbank_options"].update(frame_length=1024.0, frame_shift=1024.0)
    forge_metadata(path, json.dumps(meta))
    got = probe("runtime", path, tmp_path / "repo")
    assert got["error"] is None, got["error"]
    assert got["seconds"] < 5.0 and got["rss_mb"] < MAX_RSS_MB, got


# ----- every field's type and range, in process (fast) -----


def _forged(toy, tmp_path, text: str):
    path = tmp_path / "forged.onnx"
    path.write_bytes(toy.read_bytes())
    return forge_metadata(path, text)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"labels": list(range(10))}, "label 0 must be a string"),
        ({"labels": "abcdefghij"}, "labels must be a non-empty list"),
        ({"labels": [["a"]] * 10}, "label 0 must be a string"),
        ({"labels": ["x" * (MAX_LABEL_LENGTH + 1)] * 10}, "characters"),
        ({"labels": ["a"] * (MAX_LABELS + 1)}, "more than"),
        ({"activation": ["sigmoid"]}, "activation"),
        ({"precision": None}, "precision"),
        ({"input_name": 7}, "input_name"),
        ({"output_name": ""}, "output_name"),
        ({"optimized": "yes"}, "optimized"),
        ({"opset": True}, "opset"),
        ({"schema_version": True}, "schema_version"),
        ({"frontend": [1, 2]}, "frontend"),
        ({"verification": "ok"}, "verification"),
        ({"extra": [1]}, "extra"),
        ({"extra": {"pad": "x" * MAX_METADATA_BYTES}}, "larger than"),
    ],
)
def test_forged_fields_are_metadata_errors(toy, tmp_path, change, match):
    meta = {**metadata_of(toy), **change}
    path = _forged(toy, tmp_path, json.dumps(meta))
    with pytest.raises(MetadataError, match=match):
        Runtime(path, providers="cpu")


@pytest.mark.parametrize(
    ("frontend", "match"),
    [
        ({"num_mel_bins": "128"}, "num_mel_bins"),
        ({"max_length": 100.5}, "max_length"),
        ({"mean": "a"}, "mean"),
        ({"std": [1]}, "std"),
        ({"padding_value": None}, "padding_value"),
        ({"do_normalize": "no"}, "do_normalize"),
        ({"fbank_options": {"snip_edges": 1}}, "snip_edges"),
        ({"fbank_options": {"frame_shift": "10"}}, "frame_shift"),
        ({"fbank_options": {"window_type": ["hanning"]}}, "window_type"),
        ({"fbank_options": {"sample_frequency": "16000"}}, "sample_frequency"),
        ({"fbank_options": {"preemphasis_coefficient": 5.0}}, "preemphasis"),
        ({"fbank_options": []}, "fbank_options"),
    ],
)
def test_forged_frontend_values_are_metadata_errors(toy, tmp_path, frontend, match):
    meta = metadata_of(toy)
    fbank = frontend.pop("fbank_options", None)
    meta["frontend"].update(frontend)
    if isinstance(fbank, dict):
        meta["frontend"]["fbank_options"].update(fbank)
    elif fbank is not None:
        meta["frontend"]["fbank_options"] = fbank
    path = _forged(toy, tmp_path, json.dumps(meta))
    with pytest.raises(MetadataError, match=match):
        Runtime(path, providers="cpu")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_numbers_are_refused(toy, tmp_path, constant):
    text = json.dumps(metadata_of(toy)).replace('"mean": -4.2677393', f'"mean": {constant}')
    assert constant in text
    with pytest.raises(MetadataError, match="not a JSON number"):
        Runtime(_forged(toy, tmp_path, text), providers="cpu")


def test_a_huge_integer_is_a_metadata_error(toy, tmp_path):
    text = json.dumps(metadata_of(toy))[:-1] + ', "big": ' + "9" * 5000 + "}"
    with pytest.raises(MetadataError, match="not JSON"):
        Runtime(_forged(toy, tmp_path, text), providers="cpu")


def test_metadata_that_would_not_read_back_is_refused_when_written():
    meta = ModelMetadata(labels=["a"], activation="sigmoid", frontend={})
    meta.verification["max_abs"] = float("nan")
    with pytest.raises(MetadataError, match="standard JSON"):
        meta.to_props()
    with pytest.raises(MetadataError, match="nests deeper"):
        deep: list = []
        for _ in range(MAX_METADATA_DEPTH):
            deep = [deep]
        ModelMetadata(labels=["a"], activation="sigmoid", frontend={}, extra={"d": deep})


def test_the_tensorrt_probe_checks_the_metadata_too(tmp_path):
    """The TensorRT settings are read before the session: from checked values only."""
    import onnxruntime as ort

    from ast_onnx.runtime.providers import ProviderSettings
    from ast_onnx.runtime.session import probe_trt_settings

    path = toy_model(tmp_path / "sym.onnx", frames="frames")
    meta = metadata_of(path)
    meta["frontend"]["max_length"] = "1024"
    forge_metadata(path, json.dumps(meta))
    with pytest.raises(MetadataError, match="max_length"):
        probe_trt_settings(ort, path, ProviderSettings())
