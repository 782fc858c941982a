"""``tools/gpu_check.sh``: the check's command line (see README, "Checking a GPU machine").

    gpu_check.sh OUTDIR [--budget S] [--steps a,b]   stash this call's part, install, check
    gpu_check.sh --stash                             a carrying call: stash its part only

Exit codes: 0 passed (skipped steps included) or no GPU here; 1 a parity gate or a check
failed; 2 a step broke; 3 the carried wheels are incomplete (run the sequence again).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from gpucheck import models, payload, probe
from gpucheck.plan import Recorder, Step, StepContext, StepResult, run_isolated, run_plan
from gpucheck.report import REPORT_MD, write_reports
from gpucheck.steps import STEPS, TOTAL_S, select

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "gpu_check.py"
EXIT_INCOMPLETE = 3
#: Per log in gpu-steps.log: 7 logs stay well under the 16 MiB a returned file may have.
LOG_TAIL_CHARS = 1_000_000
#: The report printed at the end: the device tool returns the last 12,000 characters.
PRINTED_REPORT_CHARS = 9_000


def scratch_dir() -> Path:
    """Scratch space outside the repo: ``$AST_GPU_SCRATCH`` or /tmp/ast-onnx-gpu."""
    return Path(os.environ.get("AST_GPU_SCRATCH", "/tmp/ast-onnx-gpu"))


def child_env(site: Path | None) -> dict[str, str]:
    """The step processes' environment: carried wheels first, then src, CUDA libraries."""
    paths = [str(site)] if site else []
    paths += [str(REPO / "src"), os.environ.get("PYTHONPATH", "")]
    libs = [*probe.nvidia_lib_dirs(), os.environ.get("LD_LIBRARY_PATH", "")]
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(p for p in paths if p),
        LD_LIBRARY_PATH=os.pathsep.join(p for p in libs if p),
        PYTHONUNBUFFERED="1",
    )


def carried_root() -> Path:
    """Where the carried ``.gpuN`` folders are: the repo root (``$AST_GPU_CARRIED`` for tests)."""
    return Path(os.environ.get("AST_GPU_CARRIED", REPO))


def do_stash(scratch: Path) -> payload.Stash:
    """Copy this call's carried part(s); start the background export once soundfile is here.

    ``AST_GPU_PREFETCH=0`` leaves the background export out.
    """
    prefetch = os.environ.get("AST_GPU_PREFETCH", "1") != "0"
    got = payload.stash(carried_root(), scratch / "parts")
    if got.manifest is None:
        print("nothing carried: no .gpuN/ folder with a manifest in this working tree")
        return got
    print(
        f"stashed {got.copied or 'nothing new'}; parts here {got.have}, still to come {got.missing}"
    )
    early = got.manifest["early_wheels"]
    if prefetch and early and all((scratch / "parts" / w["file"]).is_file() for w in early):
        site = scratch / "site-early"
        payload.install([scratch / "parts" / w["file"] for w in early], site)
        started = models.start_prefetch(REPO, scratch / "work", [str(site), str(REPO / "src")])
        print("background AST-base export " + ("started" if started else "already running or done"))
    return got


def _probe(work: Path, env: dict[str, str], site: Path) -> dict[str, Any]:
    """The environment as a step process sees it (its own process: a crash stays there)."""
    step = Step("probe", "environment", 90, "gpucheck.main:probe_step")
    argv = _step_argv(step, work, 90, {"site": str(site)})
    result = run_isolated(step, 90, argv, _result_path(work, step), work / "probe.log", env)
    found = (result.data.get("values") or {}).get("environment")
    if not found:
        return {
            "gpu": probe.detect_gpu(),
            "probe_error": result.reason,
            "probe_log": result.log_tail[-1500:],
        }
    return found


def probe_step(ctx: StepContext) -> None:
    ctx.record.set("environment", probe.environment(ctx.options.get("site")))


def _result_path(work: Path, step: Step) -> Path:
    return work / f"step-{step.key}.json"


def _step_argv(step: Step, work: Path, limit: float, options: dict[str, Any]) -> list[str]:
    return [
        sys.executable,
        str(SCRIPT),
        "--run-step",
        step.target,
        "--work",
        str(work),
        "--result",
        str(_result_path(work, step)),
        "--seconds",
        f"{limit:.0f}",
        "--options",
        json.dumps(options),
    ]


def check(outdir: Path, total: float, keys: str | None, options: dict[str, Any]) -> int:
    started = time.monotonic()
    gpu = probe.detect_gpu()
    if gpu is None:
        message = "no GPU here (nvidia-smi is missing or lists no GPU): nothing to check"
        print(message)
        write_reports(outdir, {"gpu": None}, [], {}, status="no-gpu", message=message)
        return 0
    cuda = gpu["cuda_driver_api"]
    print(f"GPU: {gpu['name']}, driver {gpu['driver']}, CUDA {cuda}, {gpu['memory']}")
    scratch = scratch_dir()
    work, site = scratch / "work", scratch / "site"
    work.mkdir(parents=True, exist_ok=True)
    try:
        do_stash(scratch)
        wheels = payload.assemble(scratch / "parts")
        fresh = payload.install(wheels, site)
        print(
            f"{'installed' if fresh else 'already installed'}: {[w.name for w in wheels]} -> {site}"
        )
    except payload.PayloadError as e:
        print(f"carried wheels incomplete: {e}")
        write_reports(outdir, {"gpu": gpu}, [], {}, status="incomplete", message=str(e))
        return EXIT_INCOMPLETE
    env = child_env(site)
    environment = _probe(work, env, site)
    (work / "env.json").write_text(json.dumps(environment, default=str), encoding="utf-8")
    for key in (
        "onnxruntime",
        "onnxruntime_file",
        "onnxruntime_built_for_cuda",
        "cudnn",
        "torch_cuda",
        "available_providers",
        "tensorrt_libs",
        "probe_error",
    ):
        if key in environment:
            print(f"{key}: {environment[key]}")
    if not environment.get("onnxruntime_from_site"):
        print(f"WARNING: onnxruntime was not imported from the carried wheels in {site}")
    steps = select(keys)

    def execute(step: Step, limit: float) -> StepResult:
        argv = _step_argv(step, work, limit, {**options, "limit": round(limit)})
        return run_isolated(
            step, limit, argv, _result_path(work, step), work / f"step-{step.key}.log", env
        )

    results = run_plan(steps, total, execute, environment)
    _copy_logs(work, outdir, [s.key for s in steps])
    budget = {"total_s": total, "used_s": time.monotonic() - started}
    doc = write_reports(outdir, environment, results, budget)
    report = (outdir / REPORT_MD).read_text(encoding="utf-8")
    print(
        report if len(report) <= PRINTED_REPORT_CHARS else report[:PRINTED_REPORT_CHARS] + "\n..."
    )
    print(f"status {doc['status']}, exit {doc['exit_code']}; skipped: {doc['skipped'] or 'none'}")
    return int(doc["exit_code"])


def _copy_logs(work: Path, outdir: Path, keys: list[str]) -> None:
    """All step logs in one file (the device tool brings back at most 8 files)."""
    outdir.mkdir(parents=True, exist_ok=True)
    parts = []
    for name in ["probe", *(f"step-{k}" for k in keys), "models/prefetch"]:
        log = work / f"{name}.log"
        if log.is_file():
            parts.append(
                f"===== {name} =====\n"
                + log.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:]
            )
    (outdir / "gpu-steps.log").write_text("\n".join(parts), encoding="utf-8")


def run_step(target: str, work: Path, result: Path, seconds: float, options: dict[str, Any]) -> int:
    """A step process: run ``target`` and leave what it recorded in ``result``."""
    record = Recorder(result)
    env_file = work / "env.json"
    env = json.loads(env_file.read_text(encoding="utf-8")) if env_file.is_file() else {}
    ctx = StepContext(REPO, work, env, time.monotonic() + seconds, record, options)
    try:
        Step("child", "", seconds, target).function()(ctx)
        record.data["done"] = True
        record.flush()
        return 0
    except Exception:
        record.data["error"] = traceback.format_exc()
        record.flush()
        print(record.data["error"], file=sys.stderr)
        return 1


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gpu_check.sh",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("outdir", nargs="?", type=Path, help="where gpu-report.md/.json go ($OUT)")
    parser.add_argument(
        "--stash", action="store_true", help="a carrying call: stash its part and return"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=TOTAL_S,
        help=f"seconds for all steps (default {TOTAL_S:.0f})",
    )
    parser.add_argument("--steps", help=f"comma-separated subset of {[s.key for s in STEPS]}")
    parser.add_argument("--run-step", help=argparse.SUPPRESS)
    parser.add_argument("--prefetch", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not (args.stash or args.run_step or args.prefetch or args.outdir):
        parser.error("give OUTDIR (the check) or --stash (a carrying call)")
    if args.steps:
        try:
            select(args.steps)
        except ValueError as e:
            parser.error(str(e))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.run_step:
        return run_step(
            args.run_step, args.work, args.result, args.seconds, json.loads(args.options)
        )
    if args.prefetch:
        models.export_all(REPO, args.work, where="background, during the carrying calls")
        return 0
    if args.stash:
        if probe.detect_gpu() is None:
            print("no GPU here: nothing to stash for")
            return 0
        try:
            do_stash(scratch_dir())
        except payload.PayloadError as e:
            print(f"carried part refused: {e}")
            return EXIT_INCOMPLETE
        return 0
    return check(args.outdir, args.budget, args.steps, {})
