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


@pytest.mark.parametrize("name", ["frontend", "verification", "quantization", "extra"])
def test_object_fields_are_named_with_the_bad_value(name):
    with pytest.raises(MetadataError, match=rf"^{name} must be a JSON object, got \[3\]$"):
        ModelMetadata(["a"], "sigmoid", **{"frontend": {}, name: [3]})


def test_scalar_field_messages_and_bounds():
    """Exact messages (they name the value) and both sides of each bound."""
    from ast_onnx.metadata import MAX_TEXT_LENGTH

    base = {"labels": ["a"], "activation": "sigmoid", "frontend": {}}
    ModelMetadata(**base, source="x" * MAX_TEXT_LENGTH)  # at the limit: fine
    with pytest.raises(MetadataError, match=r"^source must be a string of at most 4096 .*got 'xxx"):
        ModelMetadata(**base, source="x" * (MAX_TEXT_LENGTH + 1))
    with pytest.raises(MetadataError, match=r"^optimized must be true or false, got 'yes'$"):
        ModelMetadata(**base, optimized="yes")
    assert ModelMetadata(**base, opset=1).opset == 1
    with pytest.raises(MetadataError, match=r"^opset must be an integer >= 1 or null, got 0$"):
        ModelMetadata(**base, opset=0)
    with pytest.raises(MetadataError, match=r"^schema_version must be an integer >= 1, got 0$"):
        ModelMetadata(**base, schema_version=0)
    with pytest.raises(MetadataError, match=r"^quantization needs schema_version >= 3, got 2$"):
        ModelMetadata(**base, quantization={"format": "qdq"}, schema_version=2)
