"""EventOptions owns its flags through the options' shared base, as RuntimeOptions,
ExportOptions and TritonConfig do: a new field must say whether it gets a flag."""

from __future__ import annotations

from dataclasses import fields

import pytest

from ast_onnx.cli.stream import build_parser
from ast_onnx.errors import InvalidOptionError
from ast_onnx.runtime.events import EventOptions

#: Fields with an ast-stream / ast-classify --events flag, and the flag.
FLAGS = {
    "threshold": "--threshold",
    "off_threshold": "--off-threshold",
    "thresholds": "--class-threshold",
    "min_duration": "--min-duration",
    "max_gap": "--max-gap",
    "ignore": "--ignore",
    "median_filter": "--median-filter",
}
#: Fields set through the API only.
API_ONLY = {"exclusive"}


def test_every_field_has_a_flag_or_is_api_only():
    assert {f.name for f in fields(EventOptions)} == set(FLAGS) | API_ONLY
    assert EventOptions.flags() == FLAGS


def test_api_only_fields_are_given_beside_the_flags():
    args = build_parser().parse_args(["m.onnx", "-", "--max-gap", "0.5"])
    got = EventOptions.from_args(args, exclusive=True)
    assert got == EventOptions(max_gap=0.5, exclusive=True)


def test_an_unknown_option_names_the_event_options():
    with pytest.raises(InvalidOptionError, match=r"unknown event option\(s\) \['bogus'\]"):
        EventOptions().replace(bogus=1)
