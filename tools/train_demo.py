"""Train the bundled demo model: a small AST keyword spotter on the synthesized dataset.

Reads the dataset written by ``tools/make_keyword_dataset.py``, computes the features
once with the package's own frontend (``ast_onnx.frontend.FeatureExtractor``), trains a
small ``ASTForAudioClassification`` from scratch on CPU (AdamW, warmup + cosine schedule,
SpecAugment-style time/frequency masks, optional mixup), keeps the epoch with the best
validation accuracy, measures accuracy on the whole held-out-voice test split and saves:

    OUT/config.json, model.safetensors     save_pretrained (id2label, label2id, single-label)
    OUT/preprocessor_config.json           ASTFeatureExtractor(max_length=...) fields
    OUT/metrics.json                       accuracies, train time, settings, seed

With ``--package-data DIR`` it also writes the committed evaluation subset
(``DIR/eval/*.flac`` + ``labels.csv``) and sample WAVs (``DIR/samples/*.wav``), both taken
from the test split.

Usage (needs the dev extras: torch, transformers, tqdm)::

    python tools/make_keyword_dataset.py --out /tmp/ast-onnx-keywords
    python tools/train_demo.py --data /tmp/ast-onnx-keywords \\
        --out src/ast_onnx/data/demo --package-data src/ast_onnx/data
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm
from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

from ast_onnx.frontend import FeatureExtractor

SPLITS = ("train", "validation", "test")
SAMPLE_WORDS = ("yes", "no", "up", "left", "stop", "go")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def load_split(data: Path, split: str) -> tuple[np.ndarray, list[dict]]:
    """int16 audio [clips, samples] and the CSV rows of one split."""
    audio = np.load(data / f"{split}_audio.npy")
    with open(data / f"{split}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != len(audio):
        raise ValueError(f"{split}: {len(rows)} CSV rows for {len(audio)} clips")
    return audio, rows


def compute_features(extractor: FeatureExtractor, audio: np.ndarray, desc: str) -> np.ndarray:
    """Frontend features [clips, max_length, mel] float32, in chunks with a progress bar."""
    out = np.empty((len(audio), extractor.max_length, extractor.num_mel_bins), np.float32)
    for start in tqdm(range(0, len(audio), 256), desc=f"features {desc}", leave=False):
        chunk = audio[start : start + 256].astype(np.float32) / 32768.0
        features = extractor(chunk)
        if features.truncated.any():
            raise ValueError(f"{desc}: clips longer than {extractor.max_length} frames")
        out[start : start + len(chunk)] = features.input_values
    return out


def spec_augment(x: torch.Tensor, gen: torch.Generator, max_f: int, max_t: int) -> torch.Tensor:
    """One frequency mask (< max_f bins) and one time mask (< max_t frames) per clip, to 0."""
    batch, frames, mel = x.shape
    x = x.clone()
    for mask_len, axis_len, axis in ((max_f, mel, 2), (max_t, frames, 1)):
        width = torch.randint(0, mask_len, (batch,), generator=gen)
        start = (torch.rand(batch, generator=gen) * (axis_len - width)).long()
        pos = torch.arange(axis_len)
        mask = (pos >= start[:, None]) & (pos < (start + width)[:, None])
        x = x.masked_fill(mask[:, None, :] if axis == 2 else mask[:, :, None], 0.0)
    return x


@torch.no_grad()
def predict(model: ASTForAudioClassification, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Softmax probabilities [clips, labels]."""
    model.eval()
    out = [
        model(input_values=torch.from_numpy(x[i : i + batch])).logits.softmax(-1).numpy()
        for i in range(0, len(x), batch)
    ]
    return np.concatenate(out)


def build_model(args: argparse.Namespace, classes: list[str]) -> ASTForAudioClassification:
    config = ASTConfig(
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=args.intermediate,
        max_length=args.max_length,
        num_mel_bins=128,
        frequency_stride=args.fstride,
        time_stride=args.tstride,
        hidden_dropout_prob=args.dropout,
        id2label=dict(enumerate(classes)),
        label2id={name: i for i, name in enumerate(classes)},
        problem_type="single_label_classification",
    )
    model = ASTForAudioClassification(config)
    # transformers zero-initializes the position embeddings and the two special tokens
    # (fine for fine-tuning); the original AST code draws them from a truncated normal when
    # training from scratch, which lets attention tell positions apart from the first step.
    embeddings = model.audio_spectrogram_transformer.embeddings
    for param in (
        embeddings.position_embeddings,
        embeddings.cls_token,
        embeddings.distillation_token,
    ):
        torch.nn.init.trunc_normal_(param, std=0.02)
    return model


def train(args: argparse.Namespace, feats: dict, labels: dict, classes: list[str]):
    """Train; return the model with the best validation accuracy and the epoch log."""
    model = build_model(args, classes)
    gen = torch.Generator().manual_seed(args.seed)
    x_train = torch.from_numpy(feats["train"])
    y_train = torch.from_numpy(labels["train"])
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    total = steps_per_epoch * args.epochs
    warmup = min(args.warmup, total // 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            (s + 1) / warmup
            if s < warmup
            else 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup)))
        ),
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    best, log = (-1.0, None), []
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}")
        running = 0.0
        for step in bar:
            idx = order[step * args.batch_size : (step + 1) * args.batch_size]
            x = x_train[idx]
            if args.freq_mask or args.time_mask:
                x = spec_augment(x, gen, args.freq_mask, args.time_mask)
            target = torch.nn.functional.one_hot(y_train[idx], len(classes)).float()
            if args.mixup > 0:
                lam = float(np.random.beta(args.mixup, args.mixup))
                perm = torch.randperm(len(idx), generator=gen)
                x = lam * x + (1 - lam) * x[perm]
                target = lam * target + (1 - lam) * target[perm]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                logits = model(input_values=x).logits
            loss = loss_fn(logits.float(), target)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
            bar.set_postfix(loss=f"{running:.3f}", lr=f"{schedule.get_last_lr()[0]:.1e}")
        val_acc = float(
            (predict(model, feats["validation"]).argmax(1) == labels["validation"]).mean()
        )
        log.append({"epoch": epoch + 1, "train_loss": round(running, 4), "val_acc": val_acc})
        print(f"epoch {epoch + 1}: train loss {running:.3f}, validation accuracy {val_acc:.4f}")
        if val_acc >= best[0]:
            best = (val_acc, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[1])
    return model.eval(), log


def write_package_data(
    dest: Path,
    audio: np.ndarray,
    rows: list[dict],
    probs: np.ndarray,
    classes: list[str],
    seed: int,
) -> dict:
    """Write the evaluation subset (10 test clips per class, FLAC) and sample WAVs."""
    rng = np.random.default_rng([seed, 3])
    labels = np.array([r["label"] for r in rows])
    eval_dir, sample_dir = dest / "eval", dest / "samples"
    eval_dir.mkdir(parents=True, exist_ok=True)
    sample_dir.mkdir(parents=True, exist_ok=True)
    for old in [*eval_dir.glob("*.flac"), *sample_dir.glob("*.wav")]:
        old.unlink()
    chosen, lines = set(), ["file,label"]
    for label in classes:
        for n, i in enumerate(sorted(rng.choice(np.flatnonzero(labels == label), 10, False))):
            name = f"{label.strip('_')}_{n}.flac"
            sf.write(eval_dir / name, audio[i], 16000, subtype="PCM_16", format="FLAC")
            lines.append(f"{name},{label}")
            chosen.add(int(i))
    (eval_dir / "labels.csv").write_text("\n".join(lines) + "\n")
    # Samples: clear test clips (SNR >= 20 dB, not in the eval subset) the model gets right.
    samples = {}
    for word in SAMPLE_WORDS:
        k = classes.index(word)
        for i in rng.permutation(np.flatnonzero(labels == word)):
            row = rows[i]
            clear = float(row["snr_db"]) >= 20 and float(row["gain_db"]) >= -12
            if clear and int(i) not in chosen and probs[i].argmax() == k and probs[i, k] > 0.9:
                sf.write(sample_dir / f"{word}_0.wav", audio[i], 16000, subtype="PCM_16")
                samples[f"{word}_0.wav"] = {"voice": row["voice"], "snr_db": row["snr_db"]}
                break
    return {"eval_clips": len(lines) - 1, "samples": samples}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/ast-onnx-keywords"))
    parser.add_argument("--out", type=Path, default=Path("src/ast_onnx/data/demo"))
    parser.add_argument("--package-data", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (1 is faster on a busy machine)"
    )
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup", type=int, default=50, help="linear warmup steps")
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bfloat16 autocast for the training forward pass (evaluation stays fp32)",
    )
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--mixup", type=float, default=0.0, help="Beta(a, a); 0 turns it off")
    parser.add_argument("--freq-mask", type=int, default=12, help="max masked mel bins")
    parser.add_argument("--time-mask", type=int, default=8, help="max masked frames")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--hidden", type=int, default=192)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--intermediate", type=int, default=768)
    parser.add_argument("--max-length", type=int, default=100, help="frames (1 s = 98)")
    parser.add_argument("--fstride", type=int, default=16, help="patch stride over mel bins")
    parser.add_argument("--tstride", type=int, default=16, help="patch stride over frames")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    start = time.perf_counter()
    manifest = json.loads((args.data / "manifest.json").read_text())
    classes = manifest["classes"]
    extractor = FeatureExtractor(max_length=args.max_length)
    audio, rows, feats, labels = {}, {}, {}, {}
    for split in SPLITS:
        audio[split], rows[split] = load_split(args.data, split)
        feats[split] = compute_features(extractor, audio[split], split)
        labels[split] = np.array([classes.index(r["label"]) for r in rows[split]])
    feature_s = time.perf_counter() - start

    model, log = train(args, feats, labels, classes)
    train_s = time.perf_counter() - start - feature_s
    probs = predict(model, feats["test"])
    pred = probs.argmax(1)
    test_acc = float((pred == labels["test"]).mean())
    per_class = {c: float((pred[labels["test"] == k] == k).mean()) for k, c in enumerate(classes)}
    print(f"test accuracy (held-out voices, {len(pred)} clips): {test_acc:.4f}")
    print("per class: " + ", ".join(f"{c} {a:.3f}" for c, a in per_class.items()))

    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    ASTFeatureExtractor(max_length=args.max_length).save_pretrained(args.out)
    metrics = {
        "test_accuracy": test_acc,
        "test_clips": len(pred),
        "test_per_class": per_class,
        "best_val_accuracy": max(e["val_acc"] for e in log),
        "epochs": log,
        "parameters": sum(p.numel() for p in model.parameters()),
        "feature_seconds": round(feature_s, 1),
        "train_seconds": round(train_s, 1),
        "dataset": {s: len(rows[s]) for s in SPLITS},
        "dataset_seed": manifest["seed"],
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "torch": torch.__version__,
    }
    if args.package_data is not None:
        metrics["package_data"] = write_package_data(
            args.package_data, audio["test"], rows["test"], probs, classes, args.seed
        )
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"saved {args.out} (train {train_s / 60:.1f} min, features {feature_s:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
