"""Original AST training checkpoints (``.pth``) mapped onto transformers' AST.

The original code (github.com/YuanGongND/ast) saves the ``state_dict`` of its
``ASTModel`` wrapped in ``nn.DataParallel``: keys like ``module.v.blocks.0.attn.qkv.weight``
(a timm DeiT-distilled ViT under ``v``) and ``module.mlp_head.{0,1}.*`` (LayerNorm, Linear).
They are renamed to the Hub layout of ``ASTForAudioClassification`` (what
``save_pretrained`` writes), with each fused ``qkv`` projection split into query, key and
value, and loaded through ``from_pretrained`` so every weight is checked.

Architecture, when not given:

- hidden size, layers, MLP size, patch size, labels: from tensor shapes;
- attention heads: ``hidden_size // 64`` (ViT's head size; pass ``num_heads`` otherwise);
- strides: the first of AST's published settings 10, 12, 14, 16 (equal in frequency
  and time) whose patch grid fits the positional embedding, else the unique stride that
  fits; 128 mel bins (the original code's fixed ``input_fdim``);
- ``input_tdim``: every value in a range gives the same number of time patches; the one
  with the most trailing zero bits is taken (1016..1025 -> 1024, 126..135 -> 128).
- LayerNorm epsilon is ASTConfig's default, as in transformers' published conversion.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ast_onnx.errors import CheckpointError
from ast_onnx.export.geometry import length_range, num_patches
from ast_onnx.options_base import Replaceable, option_flag

logger = logging.getLogger(__name__)

NUM_MEL_BINS = 128
HEAD_DIM = 64
PUBLISHED_STRIDES = (10, 12, 14, 16)
_IGNORED = re.compile(r"^v\.(head|head_dist)\.(weight|bias)$")
_STATIC = {
    "v.cls_token": "embeddings.cls_token",
    "v.dist_token": "embeddings.distillation_token",
    "v.pos_embed": "embeddings.position_embeddings",
    "v.patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "v.patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "v.norm.weight": "layernorm.weight",
    "v.norm.bias": "layernorm.bias",
}
_HEAD = {"mlp_head.0": "classifier.layernorm", "mlp_head.1": "classifier.dense"}
_BLOCK = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
_BLOCK_KEY = re.compile(
    r"^v\.blocks\.(\d+)\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)$"
)
_PREFIX = "audio_spectrogram_transformer."


#: The ``--help`` section of the ``.pth`` flags.
PTH_FLAGS = "original AST .pth checkpoints (inferred from shapes if omitted)"


def _pth_flag(flag: str, help: str) -> dict[str, Any]:
    return option_flag(flag, help, group=PTH_FLAGS, type=int)


@dataclass
class PthOptions(Replaceable):
    """Architecture of an original AST ``.pth`` checkpoint; ``None`` means infer from shapes.

    Each field is an ``ast-export`` flag (:meth:`~ast_onnx.options_base.Replaceable.add_arguments`).
    """

    unknown_error: ClassVar[type[Exception]] = CheckpointError
    options_name: ClassVar[str] = ".pth option"
    flag_prefix: ClassVar[str] = "pth"

    fstride: int | None = field(
        default=None, metadata=_pth_flag("--fstride", "frequency stride of the patch embedding")
    )
    tstride: int | None = field(
        default=None, metadata=_pth_flag("--tstride", "time stride of the patch embedding")
    )
    input_tdim: int | None = field(
        default=None, metadata=_pth_flag("--input-tdim", "input frames the model was trained with")
    )
    num_labels: int | None = field(
        default=None, metadata=_pth_flag("--num-labels", "number of classes (checked)")
    )
    num_heads: int | None = field(
        default=None, metadata=_pth_flag("--num-heads", "attention heads (default hidden/64)")
    )


def read_state_dict(path: Path) -> dict[str, Any]:
    """Load a ``.pth`` state dict on CPU (tensors only: ``weights_only=True``)."""
    import torch

    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors come in many types
        raise CheckpointError(
            f"cannot read {str(path)!r} as a PyTorch state dict: {type(e).__name__}: {e}"
        ) from e
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not data or not all(torch.is_tensor(v) for v in data.values()):
        raise CheckpointError(f"{str(path)!r} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in data.items()}


def infer_strides(
    total: int, patch: int, fstride: int | None, tstride: int | None, tdim: int | None
) -> tuple[int, int, int]:
    """``(fstride, tstride, time_patches)`` fitting ``total`` patches (rule in module docstring)."""

    def fits(fs: int, ts: int) -> int | None:
        f_dim = num_patches(NUM_MEL_BINS, patch, fs)
        if total % f_dim:
            return None
        t_dim = total // f_dim
        if tdim is not None and num_patches(tdim, patch, ts) != t_dim:
            return None
        return t_dim

    if fstride is not None or tstride is not None:
        fs = fstride or tstride
        ts = tstride or fstride
        assert fs is not None and ts is not None  # one of them was given
        t_dim = fits(fs, ts)
        if t_dim is None:
            raise CheckpointError(
                f"fstride={fs}, tstride={ts}"
                + (f", input_tdim={tdim}" if tdim else "")
                + f" do not fit the positional embedding's {total} patches"
            )
        return fs, ts, t_dim
    for s in PUBLISHED_STRIDES:
        if (t_dim := fits(s, s)) is not None:
            return s, s, t_dim
    found = [(s, t) for s in range(1, patch + 1) if (t := fits(s, s)) is not None]
    if len(found) != 1:
        raise CheckpointError(
            f"cannot infer the strides of a positional embedding with {total} patches "
            f"(candidates {[s for s, _ in found]}): pass fstride/tstride (--fstride/--tstride)"
        )
    return found[0][0], found[0][0], found[0][1]


def roundest(low: int, high: int) -> int:
    """The value in ``[low, high]`` with the most trailing zero bits (smallest on ties)."""
    return max(range(low, high + 1), key=lambda v: ((v & -v), -v))


def convert_state_dict(
    sd: dict[str, Any], hidden: int, origin: dict[str, str] | None = None
) -> dict[str, Any]:
    """Rename original keys to the Hub layout and split each ``qkv`` projection.

    Args:
        sd: Original state dict (``module.`` prefix removed).
        hidden: Hidden size (rows of each of query, key and value in ``qkv``).
        origin: Filled with Hub key -> original key, for error messages.
    """
    out: dict[str, Any] = {}
    origin = {} if origin is None else origin
    unexpected = []
    for key, value in sd.items():
        if _IGNORED.match(key):
            continue
        before = set(out)
        if key in _STATIC:
            out[_PREFIX + _STATIC[key]] = value
        elif (m := _BLOCK_KEY.match(key)) is not None:
            i, part, kind = m.groups()
            layer = f"{_PREFIX}encoder.layer.{i}."
            if part == "attn.qkv":
                if value.shape[0] != 3 * hidden:
                    raise CheckpointError(
                        f"{key} has shape {tuple(value.shape)}, expected first dim {3 * hidden}"
                    )
                for j, name in enumerate(("query", "key", "value")):
                    chunk = value[j * hidden : (j + 1) * hidden]
                    out[f"{layer}attention.attention.{name}.{kind}"] = chunk.contiguous().clone()
            else:
                out[f"{layer}{_BLOCK[part]}.{kind}"] = value
        elif (head := key.rsplit(".", 1))[0] in _HEAD:
            out[f"{_HEAD[head[0]]}.{head[1]}"] = value
        else:
            unexpected.append(key)
        origin.update(dict.fromkeys(set(out) - before, "module." + key))
    if unexpected:
        raise CheckpointError(
            f"not an original AST checkpoint: unexpected keys {unexpected[:5]}"
            + (f" (+{len(unexpected) - 5} more)" if len(unexpected) > 5 else "")
            + " (expected module.v.* and module.mlp_head.*)"
        )
    return out


def infer_config(sd: dict[str, Any], options: PthOptions) -> Any:
    """Build an ``ASTConfig`` from tensor shapes and ``options``."""
    from transformers import ASTConfig

    required = [
        "v.pos_embed",
        "v.patch_embed.proj.weight",
        "mlp_head.1.weight",
        "v.blocks.0.mlp.fc1.weight",
    ]
    missing = [k for k in required if k not in sd]
    if missing:
        raise CheckpointError(
            f"not an original AST checkpoint: missing {missing} (keys like "
            "module.v.blocks.0.attn.qkv.weight, module.mlp_head.1.weight expected)"
        )
    pos, proj = sd["v.pos_embed"], sd["v.patch_embed.proj.weight"]
    hidden = int(pos.shape[-1])
    if proj.dim() != 4 or proj.shape[1] != 1 or proj.shape[2] != proj.shape[3]:
        raise CheckpointError(
            f"patch_embed kernel shape {tuple(proj.shape)} is not [hidden, 1, p, p]"
        )
    patch = int(proj.shape[2])
    layers = sorted({int(m.group(1)) for k in sd if (m := _BLOCK_KEY.match(k))})
    if layers != list(range(len(layers))):
        raise CheckpointError(f"transformer blocks are not numbered 0..n-1: {layers}")
    num_labels = int(sd["mlp_head.1.weight"].shape[0])
    if options.num_labels is not None and options.num_labels != num_labels:
        raise CheckpointError(
            f"num_labels={options.num_labels} but mlp_head.1.weight has {num_labels} outputs"
        )
    heads = options.num_heads
    if heads is None:
        if hidden % HEAD_DIM:
            raise CheckpointError(
                f"cannot infer attention heads for hidden size {hidden}: pass num_heads"
            )
        heads = hidden // HEAD_DIM
    if hidden % heads:
        raise CheckpointError(f"hidden size {hidden} is not divisible by num_heads={heads}")
    fs, ts, t_dim = infer_strides(
        int(pos.shape[1]) - 2, patch, options.fstride, options.tstride, options.input_tdim
    )
    tdim = options.input_tdim or roundest(*length_range(t_dim, patch, ts))
    logger.info(
        "original checkpoint: hidden %d, %d layers, %d heads, patch %d, strides %d/%d, "
        "input_tdim %d, %d labels",
        hidden,
        len(layers),
        heads,
        patch,
        fs,
        ts,
        tdim,
        num_labels,
    )
    return ASTConfig(
        hidden_size=hidden,
        num_hidden_layers=len(layers),
        num_attention_heads=heads,
        intermediate_size=int(sd["v.blocks.0.mlp.fc1.weight"].shape[0]),
        patch_size=patch,
        frequency_stride=fs,
        time_stride=ts,
        max_length=tdim,
        num_mel_bins=NUM_MEL_BINS,
        qkv_bias="v.blocks.0.attn.qkv.bias" in sd,
        num_labels=num_labels,  # type: ignore[call-arg]  # a PretrainedConfig keyword
    )


def expected_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    """Hub-layout key -> tensor shape of an AST classifier with ``config``."""
    h, i, p = config.hidden_size, config.intermediate_size, config.patch_size
    f_dim = (config.num_mel_bins - p) // config.frequency_stride + 1
    t_dim = (config.max_length - p) // config.time_stride + 1
    emb = _PREFIX + "embeddings."
    shapes: dict[str, tuple[int, ...]] = {
        emb + "cls_token": (1, 1, h),
        emb + "distillation_token": (1, 1, h),
        emb + "position_embeddings": (1, f_dim * t_dim + 2, h),
        emb + "patch_embeddings.projection.weight": (h, 1, p, p),
        emb + "patch_embeddings.projection.bias": (h,),
        _PREFIX + "layernorm.weight": (h,),
        _PREFIX + "layernorm.bias": (h,),
        "classifier.layernorm.weight": (h,),
        "classifier.layernorm.bias": (h,),
        "classifier.dense.weight": (config.num_labels, h),
        "classifier.dense.bias": (config.num_labels,),
    }
    linear = {
        "attention.output.dense": (h, h),
        "intermediate.dense": (i, h),
        "output.dense": (h, i),
        **{f"attention.attention.{n}": (h, h) for n in ("query", "key", "value")},
    }
    for n in range(config.num_hidden_layers):
        layer = f"{_PREFIX}encoder.layer.{n}."
        for name in ("layernorm_before", "layernorm_after"):
            shapes[f"{layer}{name}.weight"] = shapes[f"{layer}{name}.bias"] = (h,)
        for name, (rows, cols) in linear.items():
            shapes[f"{layer}{name}.weight"] = (rows, cols)
            if config.qkv_bias or not name.startswith("attention.attention"):
                shapes[f"{layer}{name}.bias"] = (rows,)
    return shapes


def check_shapes(converted: dict[str, Any], config: Any, origin: dict[str, str]) -> None:
    """Raise :class:`CheckpointError` naming missing weights and shape mismatches."""
    expected = expected_shapes(config)
    missing = sorted(set(expected) - set(converted))
    wrong = [
        f"{origin.get(k, k)}: {tuple(v.shape)} (expected {expected[k]})"
        for k, v in converted.items()
        if k in expected and tuple(v.shape) != expected[k]
    ]
    if missing or wrong:
        raise CheckpointError(
            "the .pth weights do not fit the inferred architecture: "
            + (f"missing {missing[:5]} " if missing else "")
            + (f"wrong shapes {wrong[:5]}" if wrong else "")
        )


def convert_original(path: Path, options: PthOptions) -> tuple[Any, dict[str, Any]]:
    """An original AST ``.pth`` as ``(ASTConfig, Hub-layout state dict)``, every shape checked.

    A pure conversion: the caller saves both and loads them with ``from_pretrained``.
    """
    sd = read_state_dict(path)
    config = infer_config(sd, options)
    origin: dict[str, str] = {}
    converted = convert_state_dict(sd, config.hidden_size, origin)
    check_shapes(converted, config, origin)
    return config, converted
