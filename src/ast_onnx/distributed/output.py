"""Result files of batch tagging: JSON lines or parquet, written as rows arrive, resumable.

Rows are appended to a JSON-lines *journal* and flushed after every batch, so an
interrupted job keeps every row it finished. For ``.jsonl`` output the journal is
the output file itself; for ``.parquet`` it is ``OUTPUT.partial.jsonl`` beside it,
turned into the parquet file (written to a temporary name, then renamed) when the
job ends.

Resume: re-running with the same output reads what is there and skips every file
that already has a **successful** row; files with an error row are tried again (a
transient failure, a file fixed since), and their old error rows are dropped, so
the final output holds exactly one row per file. A half-written last line (the
job was killed mid-write) is dropped too.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, TextIO

from ast_onnx.atomic import write_text_atomic
from ast_onnx.distributed.stages import RESULT_COLUMNS, import_pyarrow, result_schema
from ast_onnx.errors import AstOnnxError

logger = logging.getLogger(__name__)

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def output_format(path: str | os.PathLike) -> str:
    """``"jsonl"`` or ``"parquet"`` from the output's extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"output must end in one of {sorted(FORMATS)} (JSON lines or parquet), "
            f"got {str(path)!r}"
        )
    return FORMATS[suffix]


def _read_journal(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines results file; a torn last line is dropped."""
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or "path" not in row or "error" not in row:
            if n == len(lines) and not line.endswith("\n"):
                logger.warning("%s: dropping a half-written last line", path)
                continue
            raise AstOnnxError(
                f"{path} line {n} is not an ast-classify result row; refusing to resume into "
                "it (choose another output, or pass resume=False / --no-resume to replace it)"
            )
        rows.append(row)
    return rows


def _dumps(row: dict[str, Any]) -> str:
    return json.dumps({k: row.get(k) for k in RESULT_COLUMNS}) + "\n"


class ResultWriter:
    """Appends result rows to the output; :meth:`close` finishes the file.

    Args:
        output: ``.jsonl`` (also ``.ndjson``) or ``.parquet`` path.
        resume: Keep the successful rows already there and report their paths in
            :attr:`done` (False: start the output over).
    """

    def __init__(self, output: str | os.PathLike, resume: bool = True) -> None:
        self.output = Path(output)
        self.format = output_format(self.output)
        if not self.output.parent.is_dir():
            raise AstOnnxError(f"output directory {str(self.output.parent)!r} does not exist")
        self.journal = (
            self.output
            if self.format == "jsonl"
            else self.output.with_name(self.output.name + ".partial.jsonl")
        )
        kept = self._load_previous() if resume else []
        if not resume:
            self.journal.unlink(missing_ok=True)
        #: Paths that already have a successful row (skipped by a resumed run).
        self.done: set[str] = {r["path"] for r in kept}
        self.written = 0
        self._file: TextIO | None = self.journal.open("a", encoding="utf-8")

    def _load_previous(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        if self.format == "parquet" and self.output.exists():
            import_pyarrow()
            import pyarrow.parquet as pq

            rows += pq.read_table(self.output).to_pylist()
        journal_rows = _read_journal(self.journal) if self.journal.exists() else []
        rows += journal_rows
        latest = {r["path"]: r for r in rows}  # a later row for a path replaces an earlier one
        kept = [r for r in latest.values() if r.get("error") is None]
        retried = len(latest) - len(kept)
        if retried:
            logger.info("resume: %d file(s) with error rows will be tried again", retried)
        if self.format == "parquet":
            # The finished parquet's good rows move into the journal; parquet is rewritten at close.
            write_text_atomic(self.journal, "".join(_dumps(r) for r in kept))
        elif len(kept) != len(journal_rows) or (
            journal_rows and not self.journal.read_bytes().endswith(b"\n")
        ):
            write_text_atomic(self.journal, "".join(_dumps(r) for r in kept))
        return kept

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Append rows and flush them to the file."""
        if self._file is None:
            raise ValueError("ResultWriter is closed")
        self._file.write("".join(_dumps(r) for r in rows))
        self._file.flush()
        self.written += len(rows)

    def close(self) -> None:
        """Finish the output (for parquet: write it from the journal, remove the journal)."""
        if self._file is None:
            return
        self._file.close()
        self._file = None
        if self.format == "parquet":
            pa = import_pyarrow()
            import pyarrow.parquet as pq

            table = pa.Table.from_pylist(_read_journal(self.journal), schema=result_schema())
            fd, tmp = tempfile.mkstemp(
                prefix=f".{self.output.name}.", suffix=".tmp", dir=self.output.parent
            )
            os.close(fd)
            try:
                pq.write_table(table, tmp)
                os.replace(tmp, self.output)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            self.journal.unlink()

    def abort(self) -> None:
        """Stop without finishing: rows written so far stay in the journal for a resume."""
        if self._file is not None:
            self._file.close()
            self._file = None


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a results file (``.jsonl`` or ``.parquet``), e.g. to check a finished job."""
    path = Path(path)
    if output_format(path) == "parquet":
        import_pyarrow()
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    return _read_journal(path)
