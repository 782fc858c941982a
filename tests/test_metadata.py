"""ast_onnx.metadata: validation messages, defaults, unknown keys and the props encoding.

Written to kill the mutants mutation testing found alive (see TESTING.md).
"""

from __future__ import annotations

import json

import pytest

from ast_onnx.errors import MetadataError
from ast_onnx.metadata import METADATA_KEY, SCHEMA_VERSION, ModelMetadata

BASE = {"labels": ["a", "b"], "activation": "softmax", "frontend": {"max_length": 100}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"activation": "relu"}, r"activation must be one of \('sigmoid', 'softmax'\), got 'relu'"),
        ({"precision": "bf16"}, r"precision must be one of \(.*'int8-static'\), got 'bf16'"),
        ({"input_kind": "video"}, r"input_kind must be one of \(.*'waveform'\), got 'video'"),
        ({"labels": []}, r"^labels must be a non-empty list of class names, got \[\]$"),
    ],
)
def test_invalid_fields_are_named(change, message):
    with pytest.raises(MetadataError, match=message):
        ModelMetadata(**{**BASE, **change})


def test_schema_version_defaults_to_the_current_one():
    meta = ModelMetadata.from_dict(dict(BASE))  # files written before the field existed
    assert meta.schema_version == SCHEMA_VERSION
    with pytest.raises(MetadataError, match=r"lacks required field\(s\) \['frontend'\]"):
        ModelMetadata.from_dict({"labels": ["a"], "activation": "softmax"})


def test_unknown_keys_are_kept_in_extra():
    data = {**BASE, "extra": {"fused_ops": {"Attention": 2}}, "made_by_a_newer_tool": [1, 2]}
    meta = ModelMetadata.from_dict(data)
    assert meta.extra == {"fused_ops": {"Attention": 2}, "made_by_a_newer_tool": [1, 2]}
    assert meta.labels == ["a", "b"] and not hasattr(meta, "made_by_a_newer_tool")
    assert ModelMetadata.from_dict(dict(BASE)).extra == {}
    assert ModelMetadata.from_dict({**BASE, "x": 1}).extra == {"x": 1}  # no extra given


def test_props_are_one_sorted_json_document():
    meta = ModelMetadata(**BASE, source="ckpt", opset=17)
    props = meta.to_props()
    assert list(props) == [METADATA_KEY]
    # Sorted keys: the same metadata always gives the same bytes (reproducible files).
    assert props[METADATA_KEY] == json.dumps(meta.to_dict(), sort_keys=True)
    keys = list(json.loads(props[METADATA_KEY]))
    assert keys == sorted(keys) and keys != list(meta.to_dict())
    back = ModelMetadata.from_props(props)
    assert back.to_dict() == meta.to_dict() and back.schema_version == 1  # what it uses


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({}, r"^the model has no 'ast_onnx' metadata \(not exported by ast-onnx\)$"),
        ({METADATA_KEY: "{not json"}, r"^the model's 'ast_onnx' metadata is not JSON: "),
        ({METADATA_KEY: "[1, 2]"}, r"^the model's 'ast_onnx' metadata is not a JSON object$"),
    ],
)
def test_bad_props_are_named(props, message):
    with pytest.raises(MetadataError, match=message):
        ModelMetadata.from_props(props)


def test_files_are_written_with_the_oldest_version_that_holds_them():
    """An fp32 model without thresholds stays readable by runtimes that know only v1."""
    import json

    from ast_onnx.metadata import METADATA_KEY

    def written(**fields) -> int:
        meta = ModelMetadata(["a", "b"], "sigmoid", {}, **fields)
        return json.loads(meta.to_props()[METADATA_KEY])["schema_version"]

    assert written() == 1
    assert written(thresholds={"a": 0.3}) == 2
    assert written(default_threshold=0.4) == 2
    assert written(quantization={"format": "integer"}) == 3
    assert written(thresholds={"a": 0.3}, quantization={"format": "integer"}) == 3
