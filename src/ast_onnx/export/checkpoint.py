"""Load an AST checkpoint into transformers' ``ASTForAudioClassification`` (eval, fp32),
or into the bare ``ASTModel`` (no classifier head) for a checkpoint saved without one.

A checkpoint is bare when its ``config.json`` names ``ASTModel`` in ``architectures``, or,
without ``architectures``, when its safetensors weights hold no ``classifier.`` tensor
(:func:`is_bare_checkpoint`). A bare model exports embeddings only (no logits, no labels).

Accepted sources (see :func:`resolve_source`):

- ``"demo"``: the checkpoint bundled in ``ast_onnx/data/demo``;
- a local directory written by ``save_pretrained`` (``config.json`` plus
  ``model.safetensors`` or ``pytorch_model.bin``, optionally ``preprocessor_config.json``);
- a ``.pth`` / ``.pt`` state dict of the original AST training code (see
  :mod:`ast_onnx.export.original`);
- a Hugging Face Hub id, loaded through transformers (needs network access or the
  local Hub cache).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ast_onnx.data import DEMO_CHECKPOINT, demo_checkpoint_dir
from ast_onnx.errors import CheckpointError, require
from ast_onnx.export.geometry import length_range, num_patches
from ast_onnx.export.original import PthOptions, convert_original
from ast_onnx.labels import labels_from_id2label, load_labels, resolve_activation
from ast_onnx.metadata import Activation

logger = logging.getLogger(__name__)

#: The checkpoint exported when none is named.
DEFAULT_CHECKPOINT = "MIT/ast-finetuned-audioset-10-10-0.4593"
#: Model type string of AST configs.
AST_MODEL_TYPE = "audio-spectrogram-transformer"
#: Suffixes treated as original AST training checkpoints.
PTH_SUFFIXES = (".pth", ".pt")
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_LOCAL_HINT = (
    "pass a local checkpoint instead: a save_pretrained directory (config.json + "
    "model.safetensors), an original AST FILE.pth, or 'demo' (CLI: --checkpoint DIR|FILE.pth|demo)"
)


@dataclass
class LoadedCheckpoint:
    """A checkpoint ready to export.

    Attributes:
        model: ``ASTForAudioClassification`` (or ``ASTModel`` for a bare checkpoint) in
            eval mode, fp32, eager attention.
        labels: Class names, index-aligned with the logits (empty for a bare model).
        activation: ``"sigmoid"`` or ``"softmax"`` (rule in :mod:`ast_onnx.labels`).
        frontend: ``FeatureExtractor.to_dict()`` matching the checkpoint.
        source: What was loaded (as given by the user).
    """

    model: Any
    labels: list[str]
    activation: Activation
    frontend: dict[str, Any]
    source: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def has_head(self) -> bool:
        """Whether the model has a classifier head (logits); False for a bare ``ASTModel``."""
        return hasattr(self.model, "classifier")

    @property
    def max_length(self) -> int:
        return int(self.model.config.max_length)

    @property
    def num_mel_bins(self) -> int:
        return int(self.model.config.num_mel_bins)


def resolve_source(source: str | Path) -> tuple[str, Path | str]:
    """Classify a checkpoint source.

    Returns:
        ``(kind, where)`` with kind ``"dir"``, ``"pth"`` or ``"hub"``.
    """
    text = str(source)
    if text == DEMO_CHECKPOINT:
        return "dir", demo_checkpoint_dir()
    path = Path(text).expanduser()
    if path.is_dir():
        return "dir", path
    if path.is_file():
        if path.suffix.lower() in PTH_SUFFIXES:
            return "pth", path
        raise CheckpointError(
            f"checkpoint file {text!r} is not an original AST state dict "
            f"({'/'.join(PTH_SUFFIXES)}); for a transformers checkpoint pass its directory"
        )
    looks_like_path = (
        path.suffix.lower() in PTH_SUFFIXES
        or text.startswith((".", "/", "~"))
        or text.count("/") > 1
        or "\\" in text
    )
    if looks_like_path:
        raise CheckpointError(f"checkpoint not found: {text!r} (no such file or directory)")
    if "/" not in text:  # not ORG/NAME: a mistyped folder, not worth the Hub's timeout
        raise CheckpointError(
            f"checkpoint not found: {text!r} is no directory or file here, and a Hub id has "
            f"the form ORG/NAME (e.g. {DEFAULT_CHECKPOINT})"
        )
    return "hub", text


def load_checkpoint(
    source: str | Path = DEFAULT_CHECKPOINT,
    *,
    labels: str | Path | Sequence[str] | None = None,
    activation: Activation | None = None,
    max_length: int | None = None,
    pth: PthOptions | None = None,
    work_dir: str | Path | None = None,
) -> LoadedCheckpoint:
    """Load a checkpoint for export.

    A checkpoint's own Python code never runs: one whose config asks for it
    (``auto_map``), or is not an AST config, is refused before transformers reads it,
    and every transformers call passes ``trust_remote_code=False``.

    Args:
        source: ``"demo"``, a local directory, a ``.pth`` file or a Hub id.
        labels: Labels file (CSV ``index,mid,display_name`` or JSON) or a list of
            names; overrides ``config.id2label``.
        activation: ``"sigmoid"``/``"softmax"`` override of the activation rule.
        max_length: Input frames. Must give the same number of time patches as the
            checkpoint's positional embedding (it is checked, never interpolated).
        pth: Architecture options for original ``.pth`` checkpoints.
        work_dir: Folder for the converted copy of a ``.pth`` checkpoint (None: the
            system's temporary folder); :func:`~ast_onnx.export.export_model` passes
            its work folder beside the output.

    Returns:
        The loaded model with its labels, activation and frontend parameters.
    """
    kind, where = resolve_source(source)
    if kind != "pth" and pth is not None and any(v is not None for v in vars(pth).values()):
        given = sorted(k for k, v in vars(pth).items() if v is not None)
        raise CheckpointError(f"{given} apply to original .pth checkpoints only, not to {source!r}")
    require("torch", "export", "Loading a checkpoint")
    require("transformers", "export", "Loading a checkpoint")
    preprocessor: dict[str, Any] = {}
    if kind == "pth":
        options = pth or PthOptions()
        if max_length is not None and options.input_tdim not in (None, max_length):
            raise CheckpointError(
                f"max_length={max_length} and input_tdim={options.input_tdim} disagree: "
                "they name the same thing; pass one"
            )
        if max_length is not None:
            options = PthOptions(**{**options.__dict__, "input_tdim": max_length})
        model = _load_original(Path(where), options, work_dir)
        max_length = None
    elif kind == "dir":
        model = load_pretrained(str(where), str(source))
        preprocessor = _read_json(Path(where) / "preprocessor_config.json")
    else:
        model = load_pretrained(str(where), str(source), hub=True)
        preprocessor = _hub_preprocessor(str(where))
    config = model.config
    if max_length is not None:
        _set_max_length(config, max_length)
    frontend = _frontend_dict(config, preprocessor)
    if not hasattr(model, "classifier"):  # a bare ASTModel: embeddings, no labels
        if labels is not None or activation is not None:
            raise CheckpointError(
                f"checkpoint {source!r} is a bare ASTModel (no classifier head): it has no "
                "labels or activation to set; export its embedding instead"
            )
        return LoadedCheckpoint(model, [], "sigmoid", frontend, str(source))
    num_labels = int(config.num_labels)
    if labels is None:
        label_list = labels_from_id2label(config.id2label, num_labels)
    else:
        label_list = load_labels(labels, num_labels)
    act = resolve_activation(getattr(config, "problem_type", None), num_labels, activation)
    return LoadedCheckpoint(model, label_list, act, frontend, str(source))


def _set_max_length(config: Any, max_length: int) -> None:
    if not isinstance(max_length, int) or max_length < config.patch_size:
        raise CheckpointError(
            f"max_length must be an integer >= patch size {config.patch_size}, got {max_length!r}"
        )
    have = num_patches(config.max_length, config.patch_size, config.time_stride)
    want = num_patches(max_length, config.patch_size, config.time_stride)
    if have != want:
        low, high = length_range(have, config.patch_size, config.time_stride)
        raise CheckpointError(
            f"max_length={max_length} gives {want} time patches but the checkpoint's positional "
            f"embedding has {have} (max_length {low}..{high}); positional embeddings are not "
            "interpolated"
        )
    config.max_length = max_length


def _load_original(path: Path, options: PthOptions, work_dir: str | Path | None = None) -> Any:
    """An original AST ``.pth``, converted, saved and loaded through :func:`load_pretrained`.

    The converted weights are written to a temporary folder inside ``work_dir`` (None:
    the system's temporary folder).
    """
    from safetensors.torch import save_file

    config, converted = convert_original(path, options)
    with tempfile.TemporaryDirectory(prefix="ast-onnx-pth-", dir=work_dir) as tmp:
        config.save_pretrained(tmp)
        save_file({k: v.contiguous() for k, v in converted.items()}, f"{tmp}/model.safetensors")
        return load_pretrained(tmp, str(path))


def is_bare_checkpoint(config: dict[str, Any], where: str | Path, hub: bool = False) -> bool:
    """Whether a checkpoint holds a bare ``ASTModel`` (no classifier head).

    ``config.json``'s ``architectures`` decides when it names an AST class; otherwise a
    local safetensors file is bare when none of its tensors is the classifier's (only
    the tensor names are read). Anything else is taken as a classifier checkpoint.
    """
    architectures = config.get("architectures") or []
    if isinstance(architectures, list):
        if "ASTForAudioClassification" in architectures:
            return False
        if "ASTModel" in architectures:
            return True
    weights = Path(where) / "model.safetensors"
    if hub or not weights.is_file():
        return False
    try:
        from safetensors import safe_open

        with safe_open(str(weights), framework="numpy") as f:
            keys = list(f.keys())
    except Exception:  # unreadable weights fail later, with the loader's message
        return False
    return bool(keys) and not any(k.startswith("classifier.") for k in keys)


def load_pretrained(where: str, source: str, hub: bool = False) -> Any:
    """``ASTForAudioClassification.from_pretrained`` with every weight checked.

    A bare checkpoint (:func:`is_bare_checkpoint`) loads as ``ASTModel``.

    Args:
        where: Local directory or Hub id.
        source: The name to use in error messages.
        hub: ``where`` is a Hub id (offline failures get a hint to pass a local checkpoint).
    """
    from transformers import ASTForAudioClassification, ASTModel, AutoConfig

    if not hub:
        path = Path(where)
        if not (path / "config.json").is_file():
            raise CheckpointError(f"checkpoint directory {source!r} has no config.json")
        if not any((path / name).is_file() for name in _WEIGHT_FILES):
            raise CheckpointError(
                f"checkpoint directory {source!r} has no weights (expected one of "
                f"{', '.join(_WEIGHT_FILES)})"
            )
    raw = _config_json(where, source, hub)
    check_config(raw, source)
    model_class = ASTModel if is_bare_checkpoint(raw, where, hub) else ASTForAudioClassification
    try:
        config = AutoConfig.from_pretrained(where, trust_remote_code=False)
    except OSError as e:
        raise CheckpointError(f"cannot read the config of checkpoint {source!r}: {e}") from e
    except ValueError as e:
        raise CheckpointError(f"checkpoint {source!r} has an unusable config.json: {e}") from e
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # its "Loading weights" bar is noise in our CLIs
    try:
        loaded: Any = model_class.from_pretrained(
            where,
            config=config,
            attn_implementation="eager",
            output_loading_info=True,
            trust_remote_code=False,
        )
        model, info = loaded
    except Exception as e:  # safetensors, pickle and shape errors come in many types
        raise CheckpointError(
            f"cannot load the weights of checkpoint {source!r}: {type(e).__name__}: {e}"
        ) from e
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    missing = list(info.get("missing_keys") or [])
    mismatched = list(info.get("mismatched_keys") or [])
    if missing or mismatched:
        raise CheckpointError(
            f"checkpoint {source!r} does not fit its config: missing weights {missing[:5]}, "
            f"mismatched shapes {mismatched[:5]}"
        )
    if info.get("unexpected_keys"):
        logger.warning("checkpoint %s: ignored weights %s", source, info["unexpected_keys"][:5])
    return model.float().eval()


def check_config(config: dict[str, Any], source: str) -> None:
    """Refuse a config.json that asks for the checkpoint's own code or is not AST's.

    transformers runs a checkpoint's Python files when its config maps classes to them
    (``auto_map``) and the user answers ``y`` at its prompt; an unknown ``model_type``
    is what brings the prompt up. Both are refused here, on the raw JSON, before any
    transformers call.
    """
    if "auto_map" in config:
        raise CheckpointError(
            f"checkpoint {source!r} asks to run its own Python code (config.json 'auto_map': "
            f"{sorted(map(str, config['auto_map']))[:4]}); ast-onnx never runs code from a "
            "checkpoint: use a plain transformers AST checkpoint"
        )
    model_type = config.get("model_type")
    if model_type != AST_MODEL_TYPE:
        raise CheckpointError(
            f"checkpoint {source!r} is a {model_type!r} model, expected an Audio Spectrogram "
            f"Transformer (model_type {AST_MODEL_TYPE!r})"
        )


def _config_json(where: str, source: str, hub: bool) -> dict[str, Any]:
    """The checkpoint's config.json as plain JSON (downloaded for a Hub id)."""
    if not hub:
        return _read_json(Path(where) / "config.json")
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(where, "config.json")
    except Exception as e:  # offline, no such repo, no network: many types
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"cannot load checkpoint {source!r} from the Hugging Face Hub ({reason}); {_LOCAL_HINT}"
        ) from e
    return _read_json(Path(path))


#: Largest JSON file (config, preprocessor config) read from a checkpoint.
MAX_JSON_BYTES = 16 * 1024 * 1024


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise CheckpointError(
                f"{str(path)!r} is {path.stat().st_size} bytes; a checkpoint's JSON files are "
                f"at most {MAX_JSON_BYTES // 2**20} MiB"
            )
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"cannot read {str(path)!r}: {e}") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{str(path)!r} is not a JSON object")
    return data


def _hub_preprocessor(repo_id: str) -> dict[str, Any]:
    try:
        from huggingface_hub import hf_hub_download

        return _read_json(Path(hf_hub_download(repo_id, "preprocessor_config.json")))
    except CheckpointError:
        raise
    except Exception as e:  # absent file or no network: the defaults apply
        logger.warning("no preprocessor_config.json for %s (%s): frontend defaults", repo_id, e)
        return {}


def _frontend_dict(config: Any, preprocessor: dict[str, Any]) -> dict[str, Any]:
    """``FeatureExtractor.to_dict()`` for the checkpoint (preprocessor config, else defaults)."""
    from ast_onnx.frontend import FeatureExtractor

    mel = int(config.num_mel_bins)
    if "num_mel_bins" in preprocessor and int(preprocessor["num_mel_bins"]) != mel:
        raise CheckpointError(
            f"preprocessor_config.json has num_mel_bins={preprocessor['num_mel_bins']} but the "
            f"model expects {mel}"
        )
    if "max_length" in preprocessor and int(preprocessor["max_length"]) != config.max_length:
        logger.info(
            "preprocessor max_length %s differs from the model's %s: using the model's",
            preprocessor["max_length"],
            config.max_length,
        )
    hf = {**preprocessor, "num_mel_bins": mel, "max_length": int(config.max_length)}
    try:
        return FeatureExtractor.from_hf_config(hf).to_dict()
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"unusable frontend parameters {hf}: {e}") from e
