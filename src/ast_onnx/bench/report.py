"""Benchmark report: the numbers, and their Markdown / JSON / terminal renderings.

Reports are written atomically (temporary file, then rename), so an interrupted
run never leaves a half-written report behind.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ast_onnx.atomic import write_text_atomic


@dataclass
class LatencyRow:
    """One (model, provider, batch size) latency measurement."""

    name: str
    precision: str
    provider: str
    batch_size: int
    model_ms: dict[str, float]
    frontend_ms: float | None
    clips_per_s: float
    x_realtime: float
    peak_rss_mb: float
    file_mb: float | None
    speedup_vs_eager: float | None = None


@dataclass
class DriftRow:
    """Accuracy drift of one model against the reference."""

    name: str
    precision: str
    provider: str
    reference: str
    max_abs: float
    max_rel: float
    top1_agreement: float
    top5_agreement: float
    num_inputs: int
    metric_name: str | None = None
    metric: float | None = None
    metric_drop: float | None = None

    def limit_values(self) -> dict[str, float | None]:
        """The values the drift gate checks, by limit name (:data:`ast_onnx.quality.LIMITS`)."""
        return {
            "abs": self.max_abs,
            "rel": self.max_rel,
            "top1": self.top1_agreement,
            "top5": self.top5_agreement,
            "drop": self.metric_drop,
        }


@dataclass
class BenchReport:
    """All results of one ``ast-bench`` run."""

    environment: dict[str, Any]
    settings: dict[str, Any]
    latency: list[LatencyRow] = field(default_factory=list)
    drift: list[DriftRow] = field(default_factory=list)
    gate: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fastest": self.fastest()}

    def fastest(self) -> list[dict[str, Any]]:
        """Per batch size, the fastest model call (p50) and how far ahead of the next one.

        Compares every latency row, PyTorch eager included, on the model call alone
        (features in): the frontend is the same numpy code whichever engine runs the graph.
        """
        out = []
        for batch in sorted({r.batch_size for r in self.latency}):
            rows = sorted(
                (r for r in self.latency if r.batch_size == batch), key=lambda r: r.model_ms["p50"]
            )
            best, nxt = rows[0], rows[1] if len(rows) > 1 else None
            out.append(
                {
                    "batch_size": batch,
                    "name": best.name,
                    "precision": best.precision,
                    "provider": best.provider,
                    "p50_ms": best.model_ms["p50"],
                    "next": None if nxt is None else f"{nxt.name} on {nxt.provider}",
                    "ahead": None if nxt is None else nxt.model_ms["p50"] / best.model_ms["p50"],
                }
            )
        return out

    def fastest_lines(self) -> list[str]:
        """:meth:`fastest` as one sentence per batch size."""
        lines = []
        for f in self.fastest():
            line = (
                f"batch {f['batch_size']}: {f['name']} ({f['precision']}) on {f['provider']}, "
                f"{f['p50_ms']:.1f} ms per model call"
            )
            if f["next"] is not None:
                line += f", {f['ahead']:.2f}x ahead of {f['next']}"
            lines.append(line)
        return lines

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def to_markdown(self) -> str:
        lines = ["# ast-bench report", "", "## Environment", ""]
        lines += [f"- **{k}**: {_fmt(v)}" for k, v in self.environment.items()]
        lines += ["", "## Settings", ""]
        lines += [f"- **{k}**: {_fmt(v)}" for k, v in self.settings.items()]
        lines += ["", "## Latency", ""]
        lines += _md_table(LATENCY_COLUMNS, [latency_cells(r) for r in self.latency])
        if self.latency:
            lines += ["", "## Fastest on this machine", ""]
            lines += [f"- {line}" for line in self.fastest_lines()]
        lines += ["", "## Accuracy drift", ""]
        lines += _md_table(DRIFT_COLUMNS, [drift_cells(r) for r in self.drift])
        if self.gate is not None:
            lines += ["", "## Drift gate", ""]
            verdict = "PASSED" if self.gate["passed"] else "FAILED"
            lines.append(f"- limits: {_fmt(self.gate['limits'])}")
            lines.append(f"- result: **{verdict}**")
            lines += [f"- {v}" for v in self.gate["violations"]]
        return "\n".join(lines) + "\n"


LATENCY_COLUMNS = [
    "model",
    "precision",
    "provider",
    "batch",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "mean ms",
    "frontend ms",
    "clips/s",
    "x real-time",
    "peak RSS MB",
    "file MB",
    "speed-up vs eager",
]
DRIFT_COLUMNS = [
    "model",
    "precision",
    "provider",
    "reference",
    "max abs",
    "max rel",
    "top-1 agree",
    "top-5 agree",
    "inputs",
    "metric",
    "value",
    "drop",
]


def _num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def _sci(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def latency_cells(r: LatencyRow) -> list[str]:
    m = r.model_ms
    speedup = None if r.speedup_vs_eager is None else f"{r.speedup_vs_eager:.2f}x"
    return [
        r.name,
        r.precision,
        r.provider,
        str(r.batch_size),
        _num(m["p50"], 1),
        _num(m["p90"], 1),
        _num(m["p99"], 1),
        _num(m["mean"], 1),
        _num(r.frontend_ms, 1),
        _num(r.clips_per_s),
        _num(r.x_realtime, 1),
        _num(r.peak_rss_mb, 0),
        _num(r.file_mb),
        speedup or "-",
    ]


def drift_cells(r: DriftRow) -> list[str]:
    return [
        r.name,
        r.precision,
        r.provider,
        r.reference,
        _sci(r.max_abs),
        _sci(r.max_rel),
        _num(r.top1_agreement, 4),
        _num(r.top5_agreement, 4),
        str(r.num_inputs),
        r.metric_name or "-",
        _num(r.metric, 4),
        _num(r.metric_drop, 4),
    ]


def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return "-" if value is None else str(value)


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def write_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write a report atomically (see :func:`ast_onnx.atomic.write_text_atomic`)."""
    return write_text_atomic(path, text)


def print_tables(report: BenchReport, console: Any = None) -> None:
    """Render the report's tables on the terminal with rich (plain text without it)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(report.to_markdown())
        return
    if console is None:
        console = Console()
        if not console.is_terminal:  # pipes and CI logs: don't squeeze the columns
            console = Console(width=200)
    for title, columns, rows in (
        ("Latency", LATENCY_COLUMNS, [latency_cells(r) for r in report.latency]),
        ("Accuracy drift", DRIFT_COLUMNS, [drift_cells(r) for r in report.drift]),
    ):
        table = Table(title=title)
        for col in columns:
            table.add_column(col, justify="left" if col in ("model", "precision") else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    for reason in report.settings.get("skipped", []):
        console.print(f"skipped {reason}", markup=False)
    for line in report.fastest_lines():
        console.print(f"fastest, {line}", markup=False)
    if report.gate is not None:
        style = "green" if report.gate["passed"] else "bold red"
        verdict = "passed" if report.gate["passed"] else "FAILED"
        console.print(f"[{style}]drift gate {verdict}[/] {_fmt(report.gate['limits'])}")
        for v in report.gate["violations"]:
            console.print(f"  [red]{v}[/]")
