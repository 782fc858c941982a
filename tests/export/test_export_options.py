"""ExportOptions owns its ast-export flags, as RuntimeOptions owns ast-classify's: each flag
sets its field and only it, and a new field fails here until it has a flag and a case."""

from __future__ import annotations

from dataclasses import fields

import pytest

from ast_onnx.cli.export import build_parser
from ast_onnx.errors import CheckpointError, ExportError, GateSpecError
from ast_onnx.export import ExportOptions, PthOptions

#: A non-default value per field, spelled on the command line and as the option's value.
#: A new field without an entry here fails test_every_field_has_a_case: add its case.
CASES: dict[str, tuple[list[str], object]] = {
    "precision": (["--fp16"], "fp16"),
    "calibrate": (["--int8", "--calibrate", "a", "--calibrate", "b"], ["a", "b"]),
    "opset": (["--opset", "18"], 18),
    "optimize": (["--no-optimize"], False),
    "max_length": (["--max-length", "512"], 512),
    "overwrite": (["--overwrite"], True),
    "labels": (["--labels", "labels.csv"], "labels.csv"),
    "activation": (["--activation", "softmax"], "softmax"),
    "thresholds": (["--max-drift", "abs=0.5,top1=0.8"], {"abs": 0.5, "top1": 0.8}),
    "verify": (["--no-verify"], False),
    "progress": (["-q"], False),
    "pth": (["--fstride", "10", "--num-heads", "4"], PthOptions(fstride=10, num_heads=4)),
    "with_frontend": (["--with-frontend"], True),
    "external_data": (["--external-data"], True),
    "int8_format": (["--int8-format", "qdq"], "qdq"),
    "int8_calibration": (["--int8-calibration", "entropy"], "entropy"),
    "int8_max_fp32": (["--int8-max-fp32", "3"], 3),
    "outputs": (["--outputs", "logits,embedding"], "logits,embedding"),
    "hidden_layer": (["--hidden-layer", "-1"], -1),
    "norm_stats": (["--norm-stats=-6.85,5.42"], "-6.85,5.42"),
}

#: The command line's defaults where they differ from the API's: the CLI shows progress
#: (``-q`` turns it off) and always passes .pth options (None each: inferred).
CLI_DEFAULTS = ExportOptions(progress=True, pth=PthOptions())


def parse(*flags: str) -> ExportOptions:
    return ExportOptions.from_args(build_parser().parse_args(["out.onnx", *flags]))


def test_every_field_has_a_case():
    assert {f.name for f in fields(ExportOptions)} == set(CASES)
    assert {name.partition(".")[0] for name in ExportOptions.flags()} == set(CASES)


def test_no_flags_give_the_defaults():
    assert parse() == CLI_DEFAULTS


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_flag_sets_its_field_and_only_it(name):
    argv, value = CASES[name]
    options = parse(*argv)
    assert getattr(options, name) == value
    changed = {name: getattr(CLI_DEFAULTS, name)}
    if name == "calibrate":  # --calibrate needs --int8
        changed["precision"] = "fp32"
    assert options.replace(**changed) == CLI_DEFAULTS


def test_one_calibration_path_is_passed_alone_and_int8_is_a_precision():
    options = parse("--int8", "--calibrate", "clips/")
    assert (options.precision, options.calibrate) == ("int8", "clips/")


def test_each_pth_flag_sets_its_field():
    argv = ["--fstride", "1", "--tstride", "2", "--input-tdim", "3", "--num-labels", "4"]
    assert parse(*argv, "--num-heads", "5").pth == PthOptions(1, 2, 3, 4, 5)


def test_a_bad_drift_spec_and_unknown_options_are_refused_by_name():
    with pytest.raises(GateSpecError):
        parse("--max-drift", "bogus=1")
    with pytest.raises(
        ExportError, match=r"unknown export option\(s\) \['bogus'\] for ExportOptions"
    ):
        ExportOptions().replace(bogus=1)
    with pytest.raises(CheckpointError, match=r"unknown \.pth option\(s\) \['bogus'\]"):
        PthOptions().replace(bogus=1)
