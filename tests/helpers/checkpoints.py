"""Tiny AST checkpoints built by the tests (hub weights cannot be downloaded here)."""

from __future__ import annotations

from pathlib import Path


def small_ast_config(num_labels: int = 10, max_length: int = 100, multi_label: bool = False):
    """A tiny ASTConfig (2 layers, hidden 32) with the real frontend shape (128 mel bins)."""
    from transformers import ASTConfig

    labels = [f"class_{i}" for i in range(num_labels)]
    return ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_length=max_length,
        num_mel_bins=128,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        problem_type="multi_label_classification" if multi_label else "single_label_classification",
    )


def randomize_parameters(model, seed: int = 0) -> None:
    """Give every parameter of ``model`` its own random values, in place.

    transformers' initializer leaves the biases, the cls and distillation tokens, the
    position embeddings and every LayerNorm at 0 or 1: a weight-mapping bug (two tokens
    or two LayerNorms swapped, a bias dropped) then changes nothing a test can see.
    Here LayerNorm weights are 1 +- 0.5 (uniform), LayerNorm and linear biases
    N(0, 0.1), tokens and position embeddings N(0, 0.5), and linear/conv weights
    N(0, 1 / fan_in) so activations keep unit scale and the logits span a few units.
    """
    import torch

    gen = torch.Generator().manual_seed(10_000 + seed)

    def normal(p, std: float):
        return torch.randn(p.shape, generator=gen, dtype=p.dtype) * std

    with torch.no_grad():
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                if isinstance(module, torch.nn.LayerNorm):
                    u = torch.rand(p.shape, generator=gen, dtype=p.dtype)
                    value = 0.5 + u if name == "weight" else normal(p, 0.1)
                elif name == "weight":  # Linear, Conv2d
                    value = normal(p, p[0].numel() ** -0.5)
                elif name == "bias":
                    value = normal(p, 0.1)
                elif name == "position_embeddings":
                    value = normal(p, 0.5)
                else:  # cls_token, distillation_token
                    value = normal(p, 0.5)
                p.copy_(value)


def save_small_checkpoint(path: Path, seed: int = 0, **config_kwargs) -> Path:
    """Save a tiny ASTForAudioClassification with every parameter random (save_pretrained)."""
    import torch
    from transformers import ASTFeatureExtractor, ASTForAudioClassification

    torch.manual_seed(seed)
    config = small_ast_config(**config_kwargs)
    model = ASTForAudioClassification(config).eval()
    randomize_parameters(model, seed)
    model.save_pretrained(path)
    ASTFeatureExtractor(max_length=config.max_length).save_pretrained(path)
    return path


def export_small(checkpoint: Path, output: Path, **options) -> Path:
    """Export a tiny checkpoint with ast_onnx.export.export_model (fp32, optimized by default)."""
    from ast_onnx.export import export_model

    return export_model(checkpoint, output, **options).path


def save_small_bare_checkpoint(path: Path, seed: int = 0, **config_kwargs) -> Path:
    """Save a tiny bare ASTModel (no classifier head), every parameter random."""
    import torch
    from transformers import ASTFeatureExtractor, ASTModel

    torch.manual_seed(seed)
    config = small_ast_config(**config_kwargs)
    model = ASTModel(config).eval()
    randomize_parameters(model, seed)
    model.save_pretrained(path)
    ASTFeatureExtractor(max_length=config.max_length).save_pretrained(path)
    return path
