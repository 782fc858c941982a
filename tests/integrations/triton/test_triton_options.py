"""TritonConfig owns its ast-export flags, as RuntimeOptions owns ast-classify's: each flag
sets its field and only it, and a new field must say whether it gets one."""

from __future__ import annotations

from dataclasses import fields

import pytest

from ast_onnx.cli.export import build_parser
from ast_onnx.errors import ExportError
from ast_onnx.triton import TritonConfig

#: A non-default value per flagged field, spelled on the command line and as the value.
CASES: dict[str, tuple[list[str], object]] = {
    "max_batch_size": (["--max-batch-size", "4"], 4),
    "kind": (["--triton-cpu"], "cpu"),
    "backend": (["--triton-backend", "python"], "python"),
}
#: Fields set through the API only (no ast-export flag).
API_ONLY = {
    "instance_count",
    "gpus",
    "tensorrt",
    "fp16",
    "preferred_batch_size",
    "max_queue_delay_us",
    "version",
    "trt_cache_dir",
    "model_backend",
    "frontend_instances",
    "top_k",
    "max_audio_seconds",
    "max_request_seconds",
}


def parse(*flags: str) -> TritonConfig:
    args = build_parser().parse_args(["out.onnx", "--triton-repo", "repo", *flags])
    return TritonConfig.from_args(args)


def test_every_field_has_a_flag_case_or_is_api_only():
    """A new field fails here until it gets a flag (and a case) or joins API_ONLY."""
    assert {f.name for f in fields(TritonConfig)} == set(CASES) | API_ONLY
    assert set(TritonConfig.flags()) == set(CASES)


def test_no_flags_give_the_defaults_and_the_flags_keep_their_help():
    assert parse() == TritonConfig()
    text = build_parser().format_help()
    assert "Triton max_batch_size (8)" in text
    assert "CPU instances, no TensorRT" in text
    assert "--triton-backend {onnxruntime,python,ensemble}" in text


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_flag_sets_its_field_and_only_it(name):
    argv, value = CASES[name]
    config = parse(*argv)
    assert getattr(config, name) == value
    assert config.replace(**{name: getattr(TritonConfig(), name)}) == TritonConfig()


def test_an_unknown_option_names_the_triton_config():
    """A field called ``kind`` once hid the options' own name: the message said 'gpu(s)'."""
    with pytest.raises(
        ExportError, match=r"unknown Triton option\(s\) \['bogus'\] for TritonConfig"
    ):
        TritonConfig().replace(bogus=1)
