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


def test_threshold_and_object_messages_name_the_bad_value():
    with pytest.raises(MetadataError, match=r"^thresholds must be a JSON object .*, got \[0\.5\]$"):
        ModelMetadata(**BASE, thresholds=[0.5])
    with pytest.raises(MetadataError, match=r"^thresholds\['a'\] must be .*\[0, 1\], got 1\.5$"):
        ModelMetadata(**BASE, thresholds={"a": 1.5})
    with pytest.raises(
        MetadataError, match=r"^default_threshold must be a number in \[0, 1\] or null, got -1$"
    ):
        ModelMetadata(**BASE, default_threshold=-1)
    with pytest.raises(MetadataError, match=r"^model metadata must be a JSON object, got 'x'$"):
        ModelMetadata.from_dict("x")
    with pytest.raises(MetadataError, match=r"^extra must be a JSON object, got 7$"):
        ModelMetadata.from_dict({**BASE, "extra": 7, "unknown_key": 1})
    with pytest.raises(MetadataError, match=r"^the model's 'ast_onnx' metadata is not text$"):
        ModelMetadata.from_props({METADATA_KEY: b"{}"})


def test_short_cuts_untrusted_values_to_80_characters():
    from ast_onnx.metadata import _short

    assert _short("a" * 78) == "'" + "a" * 78 + "'"  # a repr of exactly 80 characters stays
    cut = _short("a" * 79)  # 81: cut to 77 and "..."
    assert cut == "'" + "a" * 76 + "..." and len(cut) == 80


def test_label_count_and_length_limits_are_inclusive():
    from ast_onnx.metadata import MAX_LABEL_LENGTH, MAX_LABELS

    labels = [f"c{i}" for i in range(MAX_LABELS)]
    assert ModelMetadata(labels, "sigmoid", {}).num_labels == MAX_LABELS
    with pytest.raises(MetadataError, match=rf"^labels: {MAX_LABELS + 1} is more than the "):
        ModelMetadata([*labels, "one more"], "sigmoid", {})
    ModelMetadata(["x" * MAX_LABEL_LENGTH], "sigmoid", {})
    with pytest.raises(MetadataError, match=rf"^label 0 has {MAX_LABEL_LENGTH + 1} characters"):
        ModelMetadata(["x" * (MAX_LABEL_LENGTH + 1)], "sigmoid", {})
    with pytest.raises(MetadataError, match=r"^label 1 must be a string, got 3$"):
        ModelMetadata(["a", 3], "sigmoid", {})


def _nested(levels: int) -> list:
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_nesting_limit_counts_from_the_document_top_and_is_inclusive():
    """The document is level 1, ``extra`` level 2, so extra may hold 30 more levels."""
    from ast_onnx.metadata import MAX_METADATA_DEPTH

    inside = MAX_METADATA_DEPTH - 2  # levels allowed inside extra's value
    deepest = ModelMetadata(**BASE, extra={"deep": _nested(inside)})
    text = deepest.to_props()[METADATA_KEY]
    # By hand: level 1 the document, 2 extra, 3 to 32 the lists.
    assert "[" * inside + "]" * inside in text and "[" * (inside + 1) not in text
    assert ModelMetadata.from_props({METADATA_KEY: text}).extra == deepest.extra
    too_deep = text.replace("[]", "[[]]")
    with pytest.raises(MetadataError, match=rf"nests deeper than {MAX_METADATA_DEPTH} levels$"):
        ModelMetadata.from_props({METADATA_KEY: too_deep})


def test_recursion_deep_json_is_a_nesting_error():
    text = json.dumps({**BASE, "extra": {"x": 1}}).replace(
        "1}}", "[" * 100_000 + "]" * 100_000 + "}}"
    )
    with pytest.raises(
        MetadataError, match=r"^the model's 'ast_onnx' metadata nests deeper than 32 levels$"
    ):
        ModelMetadata.from_props({METADATA_KEY: text})


def _document_of(size: int, pad_char: str = "x") -> str:
    """A valid metadata document of exactly ``size`` characters (``pad_char`` repeated)."""
    empty = json.dumps({**BASE, "extra": {"pad": ""}}, ensure_ascii=False)
    return empty.replace('"pad": ""', '"pad": "' + pad_char * (size - len(empty)) + '"')


def test_size_limit_is_inclusive_and_counts_utf8_bytes():
    from ast_onnx.metadata import MAX_METADATA_BYTES

    at_limit = _document_of(MAX_METADATA_BYTES)
    assert len(at_limit) == MAX_METADATA_BYTES
    assert ModelMetadata.from_props({METADATA_KEY: at_limit}).labels == ["a", "b"]
    with pytest.raises(MetadataError, match=r"larger than 1048576 bytes$"):
        ModelMetadata.from_props({METADATA_KEY: _document_of(MAX_METADATA_BYTES + 1)})
    # Fewer characters than the limit, more bytes: "é" is 2 bytes in UTF-8.
    wide = _document_of(MAX_METADATA_BYTES * 3 // 4, "é")
    assert len(wide) < MAX_METADATA_BYTES < len(wide.encode("utf-8"))
    with pytest.raises(MetadataError, match=r"larger than 1048576 bytes$"):
        ModelMetadata.from_props({METADATA_KEY: wide})


def test_check_opset_bounds_and_message():
    from ast_onnx.errors import ExportError
    from ast_onnx.metadata import MIN_OPSET, check_opset

    assert check_opset(MIN_OPSET) == MIN_OPSET and check_opset(21) == 21
    for bad in (MIN_OPSET - 1, True, 17.0, "17", None):
        with pytest.raises(ExportError, match=rf"^opset must be an integer >= 17, got {bad!r}$"):
            check_opset(bad)


def test_opset_of_reads_the_default_domain():
    from onnx import helper

    from ast_onnx.errors import ExportError
    from ast_onnx.metadata import opset_of

    graph = helper.make_graph([], "g", [], [])
    imports = [helper.make_opsetid("com.microsoft", 1), helper.make_opsetid("", 18)]
    assert opset_of(helper.make_model(graph, opset_imports=imports)) == 18
    named = [helper.make_opsetid("ai.onnx", 19)]
    assert opset_of(helper.make_model(graph, opset_imports=named)) == 19
    only_ms = [helper.make_opsetid("com.microsoft", 1)]
    with pytest.raises(ExportError, match=r"^the model imports no default-domain opset$"):
        opset_of(helper.make_model(graph, opset_imports=only_ms))
