"""The original AST training layout of a transformers AST state dict (test helper).

Written from the layout published in transformers' conversion script
(``convert_audio_spectrogram_transformer_original_to_pytorch.py``: ``rename_key`` and the
``qkv`` split in ``convert_state_dict``), inverted independently of ``ast_onnx.export.original``.
"""

from __future__ import annotations

import re
from typing import Any

# Inverse of the published rename_key, one regex per Hub-layout key family.
_INVERSE = [
    (r"^audio_spectrogram_transformer\.embeddings\.cls_token$", "module.v.cls_token"),
    (r"^audio_spectrogram_transformer\.embeddings\.distillation_token$", "module.v.dist_token"),
    (r"^audio_spectrogram_transformer\.embeddings\.position_embeddings$", "module.v.pos_embed"),
    (
        r"^audio_spectrogram_transformer\.embeddings\.patch_embeddings\.projection\.(\w+)$",
        r"module.v.patch_embed.proj.\1",
    ),
    (
        r"^audio_spectrogram_transformer\.encoder\.layer\.(\d+)\.attention\.output\.dense\.(\w+)$",
        r"module.v.blocks.\1.attn.proj.\2",
    ),
    (
        r"^audio_spectrogram_transformer\.encoder\.layer\.(\d+)\.layernorm_before\.(\w+)$",
        r"module.v.blocks.\1.norm1.\2",
    ),
    (
        r"^audio_spectrogram_transformer\.encoder\.layer\.(\d+)\.layernorm_after\.(\w+)$",
        r"module.v.blocks.\1.norm2.\2",
    ),
    (
        r"^audio_spectrogram_transformer\.encoder\.layer\.(\d+)\.intermediate\.dense\.(\w+)$",
        r"module.v.blocks.\1.mlp.fc1.\2",
    ),
    (
        r"^audio_spectrogram_transformer\.encoder\.layer\.(\d+)\.output\.dense\.(\w+)$",
        r"module.v.blocks.\1.mlp.fc2.\2",
    ),
    (r"^audio_spectrogram_transformer\.layernorm\.(\w+)$", r"module.v.norm.\1"),
    (r"^classifier\.layernorm\.(\w+)$", r"module.mlp_head.0.\1"),
    (r"^classifier\.dense\.(\w+)$", r"module.mlp_head.1.\1"),
]
_QKV = re.compile(
    r"^audio_spectrogram_transformer\.encoder\.layer\.(\d+)\.attention\.attention\."
    r"(query|key|value)\.(\w+)$"
)


def original_layout(hub: dict[str, Any]) -> dict[str, Any]:
    """``hub`` (``ASTForAudioClassification.state_dict()`` keys) in the original ``.pth`` layout.

    Keys get the ``module.`` prefix of the original ``nn.DataParallel`` checkpoints; each
    layer's query, key and value are fused into one ``qkv`` tensor, and the unused DeiT
    heads (dropped by the published ``remove_keys``) are added with 7 outputs.
    """
    import torch

    out: dict[str, Any] = {}
    qkv: dict[tuple[str, str], dict[str, Any]] = {}
    for key, value in hub.items():
        if m := _QKV.match(key):
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
            continue
        for pattern, repl in _INVERSE:
            if re.match(pattern, key):
                out[re.sub(pattern, repl, key)] = value
                break
        else:
            raise AssertionError(f"unmapped key {key}")
    for (layer, kind), parts in qkv.items():
        # convert_state_dict: query = val[:dim], key = val[dim:2*dim], value = val[-dim:]
        fused = torch.cat([parts["query"], parts["key"], parts["value"]])
        out[f"module.v.blocks.{layer}.attn.qkv.{kind}"] = fused
    hidden = out["module.v.pos_embed"].shape[-1]
    # Unused DeiT heads, dropped by the published remove_keys.
    out["module.v.head.weight"] = torch.zeros(7, hidden)
    out["module.v.head.bias"] = torch.zeros(7)
    out["module.v.head_dist.weight"] = torch.zeros(7, hidden)
    out["module.v.head_dist.bias"] = torch.zeros(7)
    return out
