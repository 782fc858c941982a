"""Checkpoint resolution and loading: directories, labels, activation rule, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import ast_onnx.data  # noqa: E402
from ast_onnx.errors import CheckpointError  # noqa: E402
from ast_onnx.export import PthOptions, load_checkpoint  # noqa: E402
from ast_onnx.export import checkpoint as checkpoint_module  # noqa: E402
from ast_onnx.labels import read_labels, resolve_activation  # noqa: E402


def test_directory_checkpoint(small_checkpoint):
    loaded = load_checkpoint(small_checkpoint)
    assert loaded.labels == [f"class_{i}" for i in range(10)]
    assert loaded.activation == "softmax"
    assert loaded.max_length == 100 and loaded.num_mel_bins == 128
    assert not loaded.model.training
    assert loaded.frontend["max_length"] == 100


def test_max_length_must_fit_the_positional_embedding(small_checkpoint):
    # 9 time patches at stride 10 fit 96..105 frames.
    assert load_checkpoint(small_checkpoint, max_length=105).frontend["max_length"] == 105
    with pytest.raises(CheckpointError, match=r"max_length=200 .* 96\.\.105"):
        load_checkpoint(small_checkpoint, max_length=200)


@pytest.mark.parametrize(
    ("problem_type", "num_labels", "override", "expected"),
    [
        ("multi_label_classification", 10, None, "sigmoid"),
        ("single_label_classification", 527, None, "softmax"),
        (None, 527, None, "sigmoid"),
        (None, 35, None, "softmax"),
        ("multi_label_classification", 10, "softmax", "softmax"),
    ],
)
def test_activation_rule(problem_type, num_labels, override, expected):
    assert resolve_activation(problem_type, num_labels, override) == expected


def test_activation_rule_refuses_regression_and_unknown_override():
    with pytest.raises(CheckpointError, match="regression"):
        resolve_activation("regression", 1)
    with pytest.raises(CheckpointError, match="activation must be"):
        resolve_activation(None, 10, "relu")


def test_labels_files(tmp_path):
    csv = tmp_path / "class_labels_indices.csv"
    csv.write_text('index,mid,display_name\n1,/m/b,"Dog, bark"\n0,/m/a,Speech\n')
    assert read_labels(csv) == ["Speech", "Dog, bark"]
    as_list = tmp_path / "labels.json"
    as_list.write_text(json.dumps(["yes", "no"]))
    assert read_labels(as_list, 2) == ["yes", "no"]
    as_map = tmp_path / "id2label.json"
    as_map.write_text(json.dumps({"id2label": {"1": "no", "0": "yes"}}))
    assert read_labels(as_map) == ["yes", "no"]
    with pytest.raises(CheckpointError, match="holds 2 labels but the model has 3"):
        read_labels(as_list, 3)
    gap = tmp_path / "gap.json"
    gap.write_text(json.dumps({"0": "a", "2": "c"}))
    with pytest.raises(CheckpointError, match="without gaps"):
        read_labels(gap)
    yaml = tmp_path / "labels.yaml"
    yaml.write_text("- a")
    with pytest.raises(CheckpointError, match="must end in"):
        read_labels(yaml)


def test_labels_override_count_is_checked(small_checkpoint):
    loaded = load_checkpoint(small_checkpoint, labels=[f"L{i}" for i in range(10)])
    assert loaded.labels[3] == "L3"
    with pytest.raises(CheckpointError, match="3 labels given"):
        load_checkpoint(small_checkpoint, labels=["a", "b", "c"])


def test_missing_and_corrupt_checkpoints(small_checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nowhere" / "model.pth")
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        load_checkpoint(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((small_checkpoint / "config.json").read_text())
    with pytest.raises(CheckpointError, match="no weights"):
        load_checkpoint(broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="cannot load the weights"):
        load_checkpoint(broken)
    other = tmp_path / "bert"
    transformers.BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2
    ).save_pretrained(other)
    (other / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="'bert' model"):
        load_checkpoint(other)
    (tmp_path / "weights.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="not an original AST state dict"):
        load_checkpoint(tmp_path / "weights.safetensors")


def test_pth_options_refused_for_directories(small_checkpoint):
    with pytest.raises(CheckpointError, match="fstride"):
        load_checkpoint(small_checkpoint, pth=PthOptions(fstride=10))


def test_demo_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(ast_onnx.data, "files", lambda _pkg: tmp_path)
    with pytest.raises(CheckpointError, match="bundled demo checkpoint is missing"):
        load_checkpoint("demo")


def test_demo_resolves_to_the_bundled_directory(monkeypatch, small_checkpoint):
    root = small_checkpoint.parent / "pkg"
    (root / "data").mkdir(parents=True, exist_ok=True)
    if not (root / "data" / "demo").exists():
        (root / "data" / "demo").symlink_to(small_checkpoint)
    monkeypatch.setattr(ast_onnx.data, "files", lambda _pkg: root / "data")
    assert checkpoint_module.resolve_source("demo") == ("dir", root / "data" / "demo")


def test_hub_offline_failure_says_how_to_pass_a_local_checkpoint(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = (
        "import sys; from ast_onnx.cli.export import main; "
        "sys.exit(main(['--checkpoint', 'nobody-here/made-up-ast-model', '-q', sys.argv[1]]))"
    )
    out = tmp_path / "m.onnx"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1, proc.stderr
    assert "nobody-here/made-up-ast-model" in proc.stderr
    assert "pass a local checkpoint" in proc.stderr and "--checkpoint DIR" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


# ----- a checkpoint's own code never runs -----

_CUSTOM_CODE = """
import pathlib
pathlib.Path({marker!r}).write_text("the checkpoint's code ran")
from transformers import PretrainedConfig


class EvilConfig(PretrainedConfig):
    model_type = "evil-ast"
"""


def _custom_code_checkpoint(small_checkpoint, folder, model_type):
    """A copy of the tiny checkpoint whose config.json maps AutoConfig to its own code."""
    import shutil

    ckpt = folder / f"custom-{model_type}"
    shutil.copytree(small_checkpoint, ckpt)
    marker = folder / f"ran-{model_type}"
    (ckpt / "evil_config.py").write_text(_CUSTOM_CODE.format(marker=str(marker)))
    config = json.loads((ckpt / "config.json").read_text())
    config["model_type"] = model_type
    config["auto_map"] = {"AutoConfig": "evil_config.EvilConfig"}
    (ckpt / "config.json").write_text(json.dumps(config))
    return ckpt, marker


@pytest.mark.parametrize("model_type", ["evil-ast", "audio-spectrogram-transformer"])
def test_custom_code_checkpoints_are_refused_even_if_the_user_says_yes(
    small_checkpoint, tmp_path, monkeypatch, model_type
):
    # An unknown model_type makes transformers ask "run the custom code? [y/N]" (answered
    # "y" here, on stdin too); an AST model_type with auto_map loads without asking. Both
    # are refused before transformers sees them, and the code never runs.
    import builtins
    import io

    asked = []
    monkeypatch.setattr(builtins, "input", lambda prompt="": asked.append(prompt) or "y")
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\ny\n"))
    ckpt, marker = _custom_code_checkpoint(small_checkpoint, tmp_path, model_type)
    with pytest.raises(CheckpointError, match=r"asks to run its own Python code.*auto_map"):
        load_checkpoint(ckpt)
    assert not marker.exists() and asked == []


def test_custom_code_refusal_through_the_cli(small_checkpoint, tmp_path):
    # stdin closed, as in CI: still one clear line, exit 1, no output.
    ckpt, marker = _custom_code_checkpoint(small_checkpoint, tmp_path, "evil-ast")
    code = "import sys; from ast_onnx.cli.export import main; sys.exit(main(sys.argv[1:]))"
    out = tmp_path / "m.onnx"
    proc = subprocess.run(
        [sys.executable, "-c", code, "--checkpoint", str(ckpt), "-q", str(out)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert "asks to run its own Python code" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists() and not out.exists()


def test_every_transformers_load_passes_trust_remote_code_false(small_checkpoint, monkeypatch):
    from transformers import ASTForAudioClassification, AutoConfig

    seen = []
    for cls in (AutoConfig, ASTForAudioClassification):
        real = cls.from_pretrained.__func__

        def spy(klass, *args, _real=real, **kwargs):
            seen.append((klass.__name__, kwargs.get("trust_remote_code", "not passed")))
            return _real(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    load_checkpoint(small_checkpoint)
    assert seen and all(flag is False for _, flag in seen), seen
