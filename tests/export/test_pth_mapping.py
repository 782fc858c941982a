"""The ``.pth`` converter (``ast_onnx.export.original``) on state dicts, without export.

Fast and in-process (mutation testing runs these for every mutant of the module): tiny
``ASTForAudioClassification`` models with every parameter random are written in the
original training layout (``pth_layout.original_layout``, the inverse of transformers'
published conversion), converted, and checked against what transformers itself expects:
the keys and shapes of ``ASTForAudioClassification(config).state_dict()``, each tensor's
values, and the logits of the model they came from. Strides and lengths are checked
against values worked out by hand from ``(length - 16) // stride + 1`` patches.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

from helpers.checkpoints import randomize_parameters  # noqa: E402
from helpers.pth_layout import original_layout  # noqa: E402

from ast_onnx.errors import CheckpointError  # noqa: E402
from ast_onnx.export.original import (  # noqa: E402
    PthOptions,
    check_shapes,
    convert_original,
    convert_state_dict,
    expected_shapes,
    infer_config,
    infer_strides,
    read_state_dict,
    roundest,
)

PREFIX = "audio_spectrogram_transformer."

#: Tiny architectures: square strides 10 (the published default) and 12, no qkv bias,
#: unequal strides (frequency 10, time 12: 12 x 8 patches) and heads of size 64 (inferred).
CONFIGS = {
    "s10": {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64},
    "s12_no_qkv_bias": {
        "hidden_size": 32,
        "num_attention_heads": 2,
        "intermediate_size": 48,
        "frequency_stride": 12,
        "time_stride": 12,
        "max_length": 128,
        "qkv_bias": False,
        "num_labels": 3,
    },
    "f10_t12": {
        "hidden_size": 32,
        "num_attention_heads": 4,
        "intermediate_size": 40,
        "time_stride": 12,
        "num_labels": 5,
    },
    "heads_of_64": {
        "hidden_size": 128,
        "num_attention_heads": 2,
        "intermediate_size": 96,
        "num_hidden_layers": 1,
    },
}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: tiny models, and mutmut forks this process (OpenMP and fork)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(name: str, seed: int = 0):
    kwargs = {"num_hidden_layers": 2, "max_length": 100, "num_labels": 10} | CONFIGS[name]
    config = transformers.ASTConfig(num_mel_bins=128, **kwargs)
    model = transformers.ASTForAudioClassification(config).eval()
    randomize_parameters(model, seed)
    return model


def hub_weights(model, tmp_path) -> dict:
    """The weights as transformers writes them (``save_pretrained``: the Hub layout).

    transformers 5 names its modules differently in memory (``layers.0.attention.q_proj``)
    and converts on save and load, so the reference is the file it writes.
    """
    model.save_pretrained(tmp_path / "hub")
    return safetensors_torch.load_file(str(tmp_path / "hub" / "model.safetensors"))


def original(model, tmp_path) -> dict:
    """The model's weights in the original layout, ``module.`` prefix removed (as read)."""
    layout = original_layout(hub_weights(model, tmp_path))
    return {k.removeprefix("module."): v for k, v in layout.items()}


def logits(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(input_values=torch.from_numpy(x)).logits.numpy()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_converted_weights_are_transformers_weights(name, tmp_path):
    model = tiny_model(name)
    hub = hub_weights(model, tmp_path)
    origin: dict[str, str] = {}
    converted = convert_state_dict(original(model, tmp_path), model.config.hidden_size, origin)
    assert sorted(converted) == sorted(hub)
    for key, value in hub.items():
        assert torch.equal(converted[key], value), key  # distinct random values: no swaps
    # Each Hub key names the original key it came from (used in error messages).
    layout = original_layout(hub)
    for key, source in origin.items():
        assert source in layout
        if ".attention.attention." in key:
            layer, kind = key.split(".")[3], key.rsplit(".", 1)[1]
            assert source == f"module.v.blocks.{layer}.attn.qkv.{kind}"
        else:
            assert torch.equal(layout[source], hub[key]), (key, source)
    assert sorted(origin) == sorted(hub)
    # The split projections own their memory: safetensors refuses tensors that share it.
    safetensors_torch.save_file(converted, str(tmp_path / "converted.safetensors"))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_expected_shapes_are_transformers_shapes(name, tmp_path):
    model = tiny_model(name)
    want = {key: tuple(value.shape) for key, value in hub_weights(model, tmp_path).items()}
    assert expected_shapes(model.config) == want


@pytest.mark.parametrize(
    ("name", "options", "max_length"),
    [
        ("s10", PthOptions(num_heads=2), 96),  # 9 time patches: 96..105, roundest 96
        ("s10", PthOptions(num_heads=2, input_tdim=100), 100),
        ("s12_no_qkv_bias", PthOptions(num_heads=2), 128),  # 10 patches: 124..135
        ("f10_t12", PthOptions(num_heads=4, fstride=10, tstride=12), 104),  # 8: 100..111
        ("heads_of_64", PthOptions(), 96),  # heads inferred: 128 // 64
    ],
)
def test_inferred_config_is_the_models(name, options, max_length, caplog, tmp_path):
    model = tiny_model(name)
    want = model.config
    with caplog.at_level(logging.INFO, logger="ast_onnx.export.original"):
        got = infer_config(original(model, tmp_path), options)
    for field in (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "patch_size",
        "frequency_stride",
        "time_stride",
        "num_mel_bins",
        "qkv_bias",
        "num_labels",
        "layer_norm_eps",
    ):
        assert getattr(got, field) == getattr(want, field), field
    assert got.max_length == max_length
    assert (
        f"original checkpoint: hidden {want.hidden_size}, {want.num_hidden_layers} layers, "
        f"{want.num_attention_heads} heads, patch 16, strides {want.frequency_stride}/"
        f"{want.time_stride}, input_tdim {max_length}, {want.num_labels} labels"
    ) in caplog.text


def one_layer_model(**kwargs):
    config = transformers.ASTConfig(
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=48,
        num_hidden_layers=1,
        num_mel_bins=128,
        num_labels=3,
        **kwargs,
    )
    model = transformers.ASTForAudioClassification(config).eval()
    randomize_parameters(model, 0)
    return model


def test_input_tdim_decides_the_strides(tmp_path):
    # Stride 14 and 170 frames: 9 x 12 = 108 patches, which stride 10 (tried first) reads
    # as 12 x 9; only input_tdim=170 ((170 - 16) // 14 + 1 = 12 time patches) says 14.
    sd = original(one_layer_model(frequency_stride=14, time_stride=14, max_length=170), tmp_path)
    got = infer_config(sd, PthOptions(num_heads=2, input_tdim=170))
    assert (got.frequency_stride, got.time_stride, got.max_length) == (14, 14, 170)
    got = infer_config(sd, PthOptions(num_heads=2))
    assert (got.frequency_stride, got.time_stride) == (10, 10)


def test_patch_size_is_read_from_the_kernel(tmp_path):
    # Patch 8, stride 10: 13 x 10 patches; 10 time patches are 98..107 frames: 104.
    sd = original(one_layer_model(patch_size=8, max_length=100), tmp_path)
    got = infer_config(sd, PthOptions(num_heads=2))
    assert (got.patch_size, got.frequency_stride, got.time_stride) == (8, 10, 10)
    assert got.max_length == 104


def test_convert_original_gives_the_same_logits(tmp_path):
    model = tiny_model("s10", seed=5)
    path = tmp_path / "audioset_10_10.pth"
    torch.save(original_layout(hub_weights(model, tmp_path)), path)
    config, converted = convert_original(path, PthOptions(num_heads=2, input_tdim=100))
    config.save_pretrained(tmp_path / "converted")
    safetensors_torch.save_file(converted, str(tmp_path / "converted" / "model.safetensors"))
    loaded, info = transformers.ASTForAudioClassification.from_pretrained(
        tmp_path / "converted", output_loading_info=True
    )
    assert not any(info.values()), info  # no missing, unexpected or mismatched weight
    x = np.random.default_rng(0).standard_normal((2, 100, 128)).astype(np.float32)
    np.testing.assert_allclose(logits(loaded, x), logits(model, x), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("args", "want"),
    [
        # 12 frequency patches at stride 10 (112 // 10 + 1); 108 = 12 x 9 also fits
        # stride 14 (9 x 12): the published settings are tried in order, 10 first.
        ((108, 16, None, None, None), (10, 10, 9)),
        ((100, 16, None, None, None), (12, 12, 10)),  # 10 x 10 at stride 12
        ((63, 16, None, None, None), (14, 14, 7)),  # 9 x 7
        ((56, 16, None, None, None), (16, 16, 7)),  # 8 x 7
        ((51, 16, None, None, None), (7, 7, 3)),  # 17 x 3: only stride 7 (unpublished)
        ((108, 16, None, None, 100), (10, 10, 9)),
        ((108, 16, None, None, 170), (14, 14, 12)),  # stride 10 would give 16 time patches
        ((100, 16, 12, None, None), (12, 12, 10)),  # one stride given: both
        ((100, 16, None, 12, None), (12, 12, 10)),
        ((96, 16, 10, 12, 100), (10, 12, 8)),
        ((52, 8, None, None, None), (10, 10, 4)),  # patch 8: 120 // 10 + 1 = 13 x 4
        # Patch 6: stride 6 gives 21 frequency patches (122 // 6 + 1); no published stride
        # (13, 11, 9, 8 patches) and no other stride up to the patch size fits 21.
        ((21, 6, None, None, None), (6, 6, 1)),
        ((125, 4, None, None, None), (1, 1, 1)),  # patch 4: 125 patches only at stride 1
        ((51, 16, None, None, 30), (7, 7, 3)),  # the fallback search checks input_tdim too
        ((108, 16, 14, None, None), (14, 14, 12)),  # one stride given wins over the search
        ((108, 16, None, 14, None), (14, 14, 12)),
    ],
)
def test_infer_strides(args, want):
    assert infer_strides(*args) == want


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (
            (100, 16, 10, 10, None),
            r"^fstride=10, tstride=10 do not fit the positional embedding's 100 patches$",
        ),
        (
            (96, 16, 10, 12, 120),
            r"^fstride=10, tstride=12, input_tdim=120 do not fit .* 96 patches$",
        ),
        ((23 * 19, 16, None, None, None), r"with 437 patches \(candidates \[5, 6\]\): pass"),
        ((97, 16, None, None, None), r"with 97 patches \(candidates \[\]\)"),
        # Patch 5: 21 patches fit stride 6 only, which is above the patch size (not searched).
        ((21, 5, None, None, None), r"with 21 patches \(candidates \[\]\)"),
    ],
)
def test_infer_strides_errors(args, match):
    with pytest.raises(CheckpointError, match=match):
        infer_strides(*args)


@pytest.mark.parametrize(
    ("low", "high", "want"),
    [(96, 105, 96), (1016, 1025, 1024), (124, 135, 128), (126, 135, 128), (7, 7, 7), (5, 7, 6)],
)
def test_roundest(low, high, want):
    assert roundest(low, high) == want


def test_read_state_dict_unwraps_and_strips_module(tmp_path):
    sd = {"module.v.cls_token": torch.ones(1, 1, 4), "v.norm.bias": torch.zeros(4)}
    want = {"v.cls_token": sd["module.v.cls_token"], "v.norm.bias": sd["v.norm.bias"]}
    for i, data in enumerate([sd, {"state_dict": sd, "epoch": 3}, {"model": sd}]):
        path = tmp_path / f"{i}.pth"
        torch.save(data, path)
        got = read_state_dict(path)
        assert list(got) == list(want)
        assert all(torch.equal(got[k], v) for k, v in want.items())


class NotATensor:
    """A pickled object: refused by ``weights_only=True`` (arbitrary code on load)."""


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ([torch.zeros(2)], "does not hold a state dict of tensors"),
        ({}, "does not hold a state dict of tensors"),
        ({"v.cls_token": torch.zeros(2), "step": 3}, "does not hold a state dict of tensors"),
        ({"v.cls_token": torch.zeros(2), "obj": NotATensor()}, "cannot read .* as a PyTorch"),
    ],
)
def test_read_state_dict_refuses(tmp_path, data, match):
    path = tmp_path / "bad.pth"
    torch.save(data, path)
    with pytest.raises(CheckpointError, match=match) as info:
        read_state_dict(path)
    assert repr(str(path)) in str(info.value)  # names the file


def test_read_state_dict_refuses_garbage(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a zip or a pickle")
    with pytest.raises(
        CheckpointError,
        match=rf"^cannot read {str(path)!r} as a PyTorch state dict: UnpicklingError: ",
    ):
        read_state_dict(path)


def test_convert_state_dict_errors(tmp_path):
    sd = original(tiny_model("s10"), tmp_path)
    extra = dict(sd) | {f"v.extra{i}": torch.zeros(1) for i in range(7)}
    with pytest.raises(CheckpointError, match=r"\['v\.extra0', .*'v\.extra4'\] \(\+2 more\) \("):
        convert_state_dict(extra, 32)
    five = dict(sd) | {f"v.extra{i}": torch.zeros(1) for i in range(5)}
    with pytest.raises(CheckpointError) as info:
        convert_state_dict(five, 32)
    assert str(info.value).endswith("'v.extra4'] (expected module.v.* and module.mlp_head.*)")
    six = dict(sd) | {f"v.extra{i}": torch.zeros(1) for i in range(6)}
    with pytest.raises(CheckpointError, match=r"'v\.extra4'\] \(\+1 more\) \(expected"):
        convert_state_dict(six, 32)
    # A DeiT head of another name is not silently ignored.
    with pytest.raises(CheckpointError, match=r"v\.head_x\.weight"):
        convert_state_dict(dict(sd) | {"v.head_x.weight": torch.zeros(1)}, 32)
    short = dict(sd) | {"v.blocks.1.attn.qkv.weight": torch.zeros(64, 32)}
    with pytest.raises(CheckpointError, match=r"qkv\.weight has shape \(64, 32\), expected .* 96$"):
        convert_state_dict(short, 32)


def test_check_shapes_names_the_original_keys(tmp_path):
    model = tiny_model("s10")
    origin: dict[str, str] = {}
    converted = convert_state_dict(original(model, tmp_path), 32, origin)
    check_shapes(converted, model.config, origin)  # the real weights fit
    wrong = dict(converted)
    wrong[PREFIX + "encoder.layer.1.intermediate.dense.weight"] = torch.zeros(48, 32)
    with pytest.raises(
        CheckpointError, match=r"module\.v\.blocks\.1\.mlp\.fc1\.weight: \(48, 32\)"
    ):
        check_shapes(wrong, model.config, origin)
    missing = {k: v for k, v in converted.items() if ".layer.0." not in k}
    with pytest.raises(CheckpointError) as info:
        check_shapes(missing, model.config, origin)
    message = str(info.value)
    assert message.startswith("the .pth weights do not fit the inferred architecture: missing [")
    assert message.count(PREFIX + "encoder.layer.0.") == 5  # the first 5 of 15, sorted
    assert PREFIX + "encoder.layer.0.attention.attention.key.bias" in message
    assert "wrong shapes" not in message and message.endswith("'] ")  # nothing after the list
    # A key without a recorded origin is named as it is (the Hub name).
    with pytest.raises(
        CheckpointError, match=r"\['audio_spectrogram_transformer\.encoder\.layer\.1\.inter"
    ):
        check_shapes(wrong, model.config, {})
    many = {
        k: (torch.zeros(1) if ".layer.0." in k else v) for k, v in converted.items()
    }  # 15 wrong shapes, none missing
    with pytest.raises(CheckpointError) as info:
        check_shapes(many, model.config, origin)
    assert str(info.value).startswith(
        "the .pth weights do not fit the inferred architecture: wrong shapes ['module."
    )
    assert str(info.value).count("(expected ") == 5


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda sd: sd.pop("mlp_head.1.weight"), r"missing \['mlp_head\.1\.weight'\]"),
        (lambda sd: sd.pop("v.pos_embed"), r"missing \['v\.pos_embed'\]"),
        (
            lambda sd: sd.update({"v.patch_embed.proj.weight": torch.zeros(32, 2, 16, 16)}),
            r"kernel shape \(32, 2, 16, 16\) is not",
        ),
        (
            lambda sd: sd.update({"v.patch_embed.proj.weight": torch.zeros(32, 1, 16, 8)}),
            r"kernel shape \(32, 1, 16, 8\) is not",
        ),
        (
            lambda sd: sd.update({"v.patch_embed.proj.weight": torch.zeros(32, 1, 16)}),
            r"kernel shape \(32, 1, 16\) is not",
        ),
        (
            lambda sd: sd.update(
                {k.replace("blocks.1.", "blocks.2."): sd.pop(k) for k in list(sd) if ".1." in k}
            ),
            r"not numbered 0\.\.n-1: \[0, 2\]",
        ),
    ],
)
def test_infer_config_refuses(edit, match, tmp_path):
    sd = original(tiny_model("s10"), tmp_path)
    edit(sd)
    with pytest.raises(CheckpointError, match=match):
        infer_config(sd, PthOptions(num_heads=2))


def test_infer_config_missing_keys_message(tmp_path):
    sd = original(tiny_model("s10"), tmp_path)
    del sd["v.pos_embed"], sd["v.blocks.0.mlp.fc1.weight"]
    with pytest.raises(CheckpointError) as info:
        infer_config(sd, PthOptions(num_heads=2))
    assert str(info.value) == (
        "not an original AST checkpoint: missing ['v.pos_embed', 'v.blocks.0.mlp.fc1.weight'] "
        "(keys like module.v.blocks.0.attn.qkv.weight, module.mlp_head.1.weight expected)"
    )


def test_infer_config_option_errors(tmp_path):
    sd = original(tiny_model("s10"), tmp_path)
    with pytest.raises(CheckpointError, match=r"num_labels=5 but mlp_head\.1\.weight has 10"):
        infer_config(sd, PthOptions(num_heads=2, num_labels=5))
    assert infer_config(sd, PthOptions(num_heads=2, num_labels=10)).num_labels == 10
    with pytest.raises(CheckpointError, match="heads for hidden size 32: pass num_heads"):
        infer_config(sd, PthOptions())
    with pytest.raises(CheckpointError, match="hidden size 32 is not divisible by num_heads=3"):
        infer_config(sd, PthOptions(num_heads=3))


def test_convert_original_names_the_original_key_of_a_bad_shape(tmp_path):
    layout = original_layout(hub_weights(tiny_model("s10"), tmp_path))
    layout["module.v.blocks.1.mlp.fc1.weight"] = torch.zeros(48, 32)
    path = tmp_path / "narrow.pth"
    torch.save(layout, path)
    with pytest.raises(
        CheckpointError, match=r"wrong shapes \['module\.v\.blocks\.1\.mlp\.fc1\.weight: \(48, 32\)"
    ):
        convert_original(path, PthOptions(num_heads=2))


def test_read_state_dict_asks_torch_for_tensors_only_on_cpu(tmp_path, monkeypatch):
    """``weights_only=True`` and ``map_location="cpu"`` are passed, not left to defaults:
    torch < 2.6 (allowed by the export extra) unpickles any object by default, and a
    checkpoint saved on a GPU must load on a CPU-only build box. Neither can be shown
    with the pinned torch on this machine, so the call itself is checked."""
    path = tmp_path / "sd.pth"
    torch.save({"v.cls_token": torch.zeros(1)}, path)
    seen = []
    real = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    read_state_dict(path)
    assert seen == [{"map_location": "cpu", "weights_only": True}]
