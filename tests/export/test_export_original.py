"""Original AST ``.pth`` checkpoints: key mapping, shape inference, errors.

The original-format state dicts are written here from small transformers models with the
layout published in transformers' conversion script
(``convert_audio_spectrogram_transformer_original_to_pytorch.py``: ``rename_key`` and the
``qkv`` split in ``convert_state_dict``), inverted independently of the loader.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

from helpers.checkpoints import randomize_parameters, save_small_checkpoint  # noqa: E402
from helpers.compare import assert_close_in_range  # noqa: E402
from helpers.pth_layout import original_layout  # noqa: E402

from ast_onnx.errors import CheckpointError  # noqa: E402
from ast_onnx.export import PthOptions, export_model, load_checkpoint  # noqa: E402


def original_state_dict(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The original AST training layout of a save_pretrained checkpoint's weights."""
    return original_layout(safetensors_torch.load_file(str(checkpoint / "model.safetensors")))


@pytest.fixture(scope="module")
def pth(small_checkpoint, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pth") / "audioset_10_10.pth"
    torch.save(original_state_dict(small_checkpoint), path)
    return path


def _features(batch: int = 2) -> np.ndarray:
    return np.random.default_rng(3).standard_normal((batch, 100, 128)).astype(np.float32)


def _logits(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(input_values=torch.from_numpy(x)).logits.numpy()


def test_pth_loads_to_the_same_logits(pth, small_checkpoint):
    loaded = load_checkpoint(pth, pth=PthOptions(num_heads=2, input_tdim=100))
    reference = transformers.ASTForAudioClassification.from_pretrained(small_checkpoint).eval()
    x = _features()
    np.testing.assert_allclose(_logits(loaded.model, x), _logits(reference, x), atol=1e-6, rtol=0)
    assert loaded.max_length == 100 and loaded.frontend["max_length"] == 100


def test_pth_shape_inference(pth):
    config = load_checkpoint(pth, pth=PthOptions(num_heads=2)).config
    assert (config.frequency_stride, config.time_stride) == (10, 10)
    # 9 time patches at stride 10 fit 96..105 frames; the roundest (most trailing zero bits) wins.
    assert config.max_length == 96
    assert config.num_labels == 10
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (32, 2, 64)
    assert config.patch_size == 16 and config.num_mel_bins == 128


def test_pth_shape_inference_other_strides(tmp_path):
    ckpt = save_small_checkpoint(tmp_path / "s12", max_length=128, num_labels=4)
    config_path = ckpt / "config.json"
    # Rebuild the checkpoint with 12/12 strides (the published 12-12 AudioSet setting).
    cfg = transformers.ASTConfig.from_pretrained(ckpt)
    cfg.frequency_stride = cfg.time_stride = 12
    model = transformers.ASTForAudioClassification(cfg)
    randomize_parameters(model, seed=12)
    model.save_pretrained(ckpt)
    assert config_path.is_file()
    path = tmp_path / "s12.pth"
    torch.save(original_state_dict(ckpt), path)
    loaded = load_checkpoint(path, pth=PthOptions(num_heads=2))
    assert (loaded.config.frequency_stride, loaded.config.time_stride) == (12, 12)
    assert loaded.config.max_length == 128  # 10 time patches: 124..135 frames
    assert len(loaded.labels) == 4 and loaded.activation == "softmax"
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(path, pth=PthOptions(num_heads=2, fstride=10, tstride=10))


def test_pth_labels_from_csv_and_count_check(pth, tmp_path):
    csv = tmp_path / "class_labels_indices.csv"
    rows = ["index,mid,display_name"] + [f'{i},/m/{i:04d},"Sound, {i}"' for i in range(10)]
    csv.write_text("\n".join(rows) + "\n")
    loaded = load_checkpoint(pth, labels=csv, pth=PthOptions(num_heads=2, input_tdim=100))
    assert loaded.labels[0] == "Sound, 0" and len(loaded.labels) == 10
    with pytest.raises(CheckpointError, match="num_labels=5"):
        load_checkpoint(pth, pth=PthOptions(num_heads=2, num_labels=5))


def test_pth_export_matches_pytorch(pth, small_checkpoint, tmp_path):
    result = export_model(pth, tmp_path / "pth.onnx", pth=PthOptions(num_heads=2, input_tdim=100))
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    reference = transformers.ASTForAudioClassification.from_pretrained(small_checkpoint).eval()
    x = _features(3)
    got = sess.run(None, {"input_values": x})[0]
    # fp32: measured 3e-7 of the logit range; a swapped token or LayerNorm moves ~0.7.
    assert_close_in_range(got, _logits(reference, x), rel=1e-5, top1=1.0)


def test_pth_with_wrong_keys_or_shapes(pth, tmp_path):
    sd = torch.load(pth, weights_only=True)
    renamed = dict(sd)
    renamed["module.v.blocks.0.attention.weird.weight"] = renamed.pop(
        "module.v.blocks.0.attn.proj.weight"
    )
    bad = tmp_path / "renamed.pth"
    torch.save(renamed, bad)
    with pytest.raises(CheckpointError, match="unexpected keys"):
        load_checkpoint(bad, pth=PthOptions(num_heads=2))

    no_head = {k: v for k, v in sd.items() if not k.startswith("module.mlp_head")}
    torch.save(no_head, bad)
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(bad, pth=PthOptions(num_heads=2))

    short = dict(sd)
    short["module.v.blocks.1.attn.qkv.weight"] = short["module.v.blocks.1.attn.qkv.weight"][:64]
    torch.save(short, bad)
    with pytest.raises(CheckpointError, match="qkv"):
        load_checkpoint(bad, pth=PthOptions(num_heads=2))

    narrow = dict(sd)
    narrow["module.v.blocks.1.mlp.fc1.weight"] = torch.zeros(48, 32)
    torch.save(narrow, bad)
    with pytest.raises(
        CheckpointError, match=r"do not fit .*blocks\.1\.mlp\.fc1\.weight: \(48, 32\)"
    ):
        load_checkpoint(bad, pth=PthOptions(num_heads=2))

    bad.write_bytes(b"definitely not a zip or pickle")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(bad)

    with pytest.raises(CheckpointError, match="num_heads"):
        load_checkpoint(pth)  # hidden 32 is not a multiple of 64: heads cannot be inferred
