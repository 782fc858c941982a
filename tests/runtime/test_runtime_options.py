"""RuntimeOptions is the one list of Runtime knobs: every field is an ast-classify flag and
reaches the Runtime, in one process and in the Ray actors."""

from __future__ import annotations

from dataclasses import fields

import pytest
from helpers.runtime_toy import toy_model

from ast_onnx.cli.classify import build_parser
from ast_onnx.distributed.pipeline import RayOptions, actor_spec, model_spec
from ast_onnx.distributed.stages import Scorer
from ast_onnx.errors import InvalidOptionError
from ast_onnx.runtime import Runtime, RuntimeOptions

#: A non-default value per field, spelled on the command line and as the option's value.
#: A new field without an entry here fails test_every_field_has_a_case: add its case.
CASES: dict[str, tuple[list[str], object]] = {
    "providers": (["--provider", "cpu"], "cpu"),
    "device_id": (["--device-id", "3"], 3),
    "threads": (["--threads", "1"], 1),
    "fallback": (["--fallback"], True),
    "labels": (["--labels", "labels.txt"], "labels.txt"),
    "activation": (["--activation", "softmax"], "softmax"),
    "batch_size": (["--batch-size", "2"], 2),
    "cache_dir": (["--cache-dir", "/tmp/trt"], "/tmp/trt"),
    "window_hop": (["--hop", "0.5"], 0.5),
    "aggregate": (["--aggregate", "max"], "max"),
    "gpu_mem_limit": (["--gpu-mem-limit", "1024"], 1024),
    "provider_options": (
        ["--provider-option", "cuda:a=1", "--provider-option", "cuda:b=2"],
        {"cuda": {"a": "1", "b": "2"}},
    ),
    "prepack": (["--no-prepack"], False),
    "max_audio_seconds": (["--max-audio-seconds", "60"], 60.0),
    "allow_any_ops": (["--allow-any-ops"], True),
    "run_timeout": (["--run-timeout", "2.5"], 2.5),
}


def parse(*flags: str) -> RuntimeOptions:
    return RuntimeOptions.from_args(build_parser().parse_args(["m.onnx", "a.wav", *flags]))


def test_every_field_has_a_case():
    assert {f.name for f in fields(RuntimeOptions)} == set(CASES)


def test_no_flags_give_the_defaults():
    assert parse() == RuntimeOptions()


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_flag_sets_its_field_and_only_it(name):
    argv, value = CASES[name]
    options = parse(*argv)
    assert getattr(options, name) == value
    assert options.replace(**{name: getattr(RuntimeOptions(), name)}) == RuntimeOptions()


def test_bad_values_are_refused_with_the_option_name():
    for bad in ({"batch_size": 0}, {"threads": 0}, {"device_id": -1}, {"aggregate": "median"}):
        with pytest.raises(InvalidOptionError, match=next(iter(bad))):
            RuntimeOptions(**bad)
    with pytest.raises(InvalidOptionError, match="unknown Runtime option"):
        RuntimeOptions().replace(provider="cpu")


def test_threads_are_bounded_by_a_multiple_of_the_cpus(monkeypatch):
    import ast_onnx.runtime.options as options_module

    monkeypatch.setattr(options_module.os, "sched_getaffinity", lambda pid: set(range(32)))
    assert options_module.max_threads() == 128  # 4 per CPU
    assert RuntimeOptions(threads=128).threads == 128
    for bad in (129, 100_000):
        with pytest.raises(InvalidOptionError, match=r"threads must be at most 128 .*got"):
            RuntimeOptions(threads=bad)
    monkeypatch.setattr(options_module.os, "sched_getaffinity", lambda pid: {0, 1})
    assert options_module.max_threads() == 64  # the floor on small machines
    with pytest.raises(InvalidOptionError, match="at most 64"):
        parse("--threads", "100000")


def test_triton_runtime_options_go_through_the_same_bound():
    from ast_onnx.triton.python_entry import options_from_json

    with pytest.raises(InvalidOptionError, match="threads must be at most"):
        options_from_json('{"threads": 100000}')
    with pytest.raises(InvalidOptionError, match="run_timeout"):
        options_from_json('{"run_timeout": -1}')


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return toy_model(tmp_path_factory.mktemp("toy") / "toy.onnx", labels=3)


def test_every_option_reaches_the_ray_actors_runtime(toy, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    argv = [flag for name, (flags, _) in CASES.items() if name != "labels" for flag in flags]
    options = RayOptions(parse(*argv, "--labels", str(labels)), actor_cpus=1)
    # The actors' resources decide the provider and (when not given) the threads; every
    # other option is the job's, unchanged.
    spec = actor_spec(model_spec(toy, options), options, gpus=0)
    assert spec.runtime == options.runtime
    scorer = Scorer(spec)
    assert scorer.runtime.options == options.runtime
    assert scorer.runtime.labels == ["a", "b", "c"]
    assert scorer.runtime.activation == "softmax"
    assert scorer.runtime.aggregate == "max"
    session = scorer.runtime._session.get_session_options()
    assert session.get_session_config_entry("session.disable_prepacking") == "1"
    assert session.intra_op_num_threads == 1


def test_a_runtime_built_from_options_equals_one_built_from_keywords(toy):
    opts = RuntimeOptions(providers="cpu", batch_size=2, aggregate="max")
    a, b = Runtime(toy, opts), Runtime(toy, providers="cpu", batch_size=2, aggregate="max")
    assert a.options == b.options == opts
    assert (a.batch_size, a.aggregate) == (b.batch_size, b.aggregate) == (2, "max")
