"""Check ast-onnx on your GPU box: the GPU tests, then CUDA/TensorRT latency and drift.

On a machine with an NVIDIA GPU and ``pip install "ast-onnx[gpu]"`` (onnxruntime-gpu, never
beside onnxruntime), from a source checkout::

    python tools/gpu_check.py --out gpu-report            # or: make test-gpu

It prints the device and onnxruntime's providers, runs the ``gpu``-marked tests (JUnit XML
in OUT), times MODEL (default: the bundled demo checkpoint exported into OUT, which needs
the [export] extra) on CUDA, and on TensorRT where its libraries load, at batch 1, 8 and
32, with the drift of its logits against the CPU provider, and writes OUT/report.md and
OUT/report.json. Exit status: 0 all passed (or no GPU here: it says why, in seconds);
1 a test failed, a provider failed to load or a drift gate broke.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (1, 8, 32)
#: Timed runs after two untimed ones; the median is reported (a GPU's first runs and
#: clock ramps make single runs noisy).
RUNS = 20


def no_gpu_reason() -> str | None:
    """Why there is nothing to check here, or None when a CUDA GPU is usable."""
    try:
        import onnxruntime as ort
    except ImportError:
        return 'onnxruntime is not installed (pip install "ast-onnx[gpu]")'
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return (
            "onnxruntime offers no CUDAExecutionProvider (install onnxruntime-gpu alone: "
            'pip install "ast-onnx[gpu]")'
        )
    if device_name() is None:
        return "nvidia-smi lists no GPU (no NVIDIA driver or device)"
    return None


def device_name() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else None


def run_gpu_tests(out: Path) -> dict[str, Any]:
    """``pytest -m gpu`` over tests/; counts from its JUnit XML."""
    xml = out / "gpu-tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", f"--junitxml={xml}", "tests"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    counts = {"exit": proc.returncode, "tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if xml.is_file():
        suite = ET.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        for key in ("tests", "failures", "errors", "skipped"):
            counts[key] = int(suite.get(key, 0)) if suite is not None else 0
    counts["tail"] = proc.stdout.strip().splitlines()[-1:] or proc.stderr.strip().splitlines()[-1:]
    return counts


def demo_model(out: Path) -> Path:
    from ast_onnx.export import export_model  # the [export] extra

    path = out / "demo.onnx"
    if not path.is_file():
        export_model("demo", path, overwrite=True)
    return path


def measure(model: Path, provider: str, batches: tuple[int, ...]) -> list[dict[str, Any]]:
    """Median latency and drift against CPU of ``model`` on ``provider``, per batch size."""
    from ast_onnx.bench.inputs import generated_waves
    from ast_onnx.bench.stats import time_call
    from ast_onnx.quality import DEFAULT_THRESHOLDS, logit_drift, violations
    from ast_onnx.runtime import Runtime

    cpu = Runtime(model, providers="cpu")
    gpu = Runtime(model, providers=provider, batch_size=max(batches))
    clips = generated_waves(max(batches), cpu.window_samples, cpu.sample_rate)
    x = cpu.features(clips.waves)
    reference = cpu.logits(x)
    precision = gpu.metadata.precision if gpu.metadata is not None else "fp32"
    limits = DEFAULT_THRESHOLDS.get(precision, DEFAULT_THRESHOLDS["fp32"])
    rows = []
    for batch in batches:
        chunk = x[:batch]
        timing = time_call(lambda c=chunk: gpu.logits(c), warmup=2, iterations=RUNS)
        drift = logit_drift(gpu.logits(chunk), reference[:batch])
        broken = [str(v) for v in violations(drift.limit_values(), limits)]
        rows.append(
            {
                "provider": gpu.provider,
                "precision": precision,
                "batch": batch,
                "p50_ms": round(timing.p50, 3),
                "clips_per_s": round(batch / (timing.p50 / 1e3), 1),
                "max_abs": drift.max_abs,
                "top1": drift.top1_agreement,
                "gate": "pass" if not broken else "; ".join(broken),
            }
        )
    return rows


def markdown(report: dict[str, Any]) -> str:
    lines = ["# ast-onnx GPU check", ""]
    if report["status"] == "skipped":
        return "\n".join([*lines, f"Skipped: {report['reason']}", ""])
    lines += [f"- device: {report['device']}", f"- providers: {', '.join(report['providers'])}"]
    t = report.get("tests")
    if t:
        lines.append(
            f"- gpu tests: {t['tests']} run, {t['failures']} failed, {t['errors']} errors, "
            f"{t['skipped']} skipped (pytest exit {t['exit']})"
        )
    lines += [f"- {note}" for note in report["notes"]]
    lines += ["", "| provider | precision | batch | p50 ms | clips/s | max abs | top-1 | gate |"]
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in report["rows"]:
        lines.append(
            f"| {r['provider']} | {r['precision']} | {r['batch']} | {r['p50_ms']:.2f} "
            f"| {r['clips_per_s']:.1f} | {r['max_abs']:.2e} | {r['top1']:.3f} | {r['gate']} |"
        )
    return "\n".join([*lines, "", f"Status: {report['status']}", ""])


def write_report(out: Path, report: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(report), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("gpu-report"), help="report folder")
    p.add_argument("--model", type=Path, help="an ast-onnx model (default: the demo, exported)")
    p.add_argument("--batches", default=",".join(map(str, BATCHES)), help="batch sizes")
    p.add_argument("--no-tests", action="store_true", help="skip the gpu-marked tests")
    args = p.parse_args(argv)
    started = time.time()
    reason = no_gpu_reason()
    if reason is not None:
        print(f"gpu_check: nothing to check on this machine: {reason}")
        write_report(args.out, {"status": "skipped", "reason": reason})
        return 0
    import onnxruntime as ort

    providers = ort.get_available_providers()
    report: dict[str, Any] = {"device": device_name(), "providers": providers, "notes": []}
    report["onnxruntime"] = ort.__version__
    print(f"device: {report['device']}\nproviders: {', '.join(providers)}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    if not args.no_tests:
        report["tests"] = tests = run_gpu_tests(args.out)
        print(f"gpu tests: {' '.join(tests['tail'])}", flush=True)
        failed |= tests["exit"] not in (0, 5)  # 5: no test collected
    model = args.model or demo_model(args.out)
    batches = tuple(int(b) for b in args.batches.split(","))
    report["rows"] = []
    for provider in ("cuda", "tensorrt"):
        if provider == "tensorrt" and "TensorrtExecutionProvider" not in providers:
            report["notes"].append("TensorRT: onnxruntime offers no TensorrtExecutionProvider")
            continue
        try:
            rows = measure(model, provider, batches)
        except Exception as e:  # a provider that fails to load is reported, then judged
            report["notes"].append(f"{provider}: {type(e).__name__}: {e}")
            failed |= provider == "cuda"  # TensorRT's libraries are optional
            continue
        report["rows"] += rows
        failed |= any(r["gate"] != "pass" for r in rows)
    report["status"] = "failed" if failed else "passed"
    report["seconds"] = round(time.time() - started, 1)
    write_report(args.out, report)
    print(markdown(report))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
