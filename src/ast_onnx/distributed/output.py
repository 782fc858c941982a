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

Identity: a results file only holds rows of one model and one set of row-shaping
options. Its identity (:func:`~ast_onnx.distributed.identity.run_identity`: the
model's sha256, its labels, ``top_k``, aggregation, window and hop) is recorded in
a sidecar ``OUTPUT.meta.json`` when the job starts, and a resume with another
identity is refused with an error naming both (``--no-resume`` replaces the file).
A sidecar rather than a header row or parquet metadata because it works the same
for both formats and for the parquet's journal, and leaves every line of a
``.jsonl`` a result row (``pandas.read_json(lines=True)``, ``jq`` and the like read
it unchanged). A file with rows but no sidecar (an older ast-onnx wrote it, or it
was copied alone) is refused too: nothing tells whether its rows fit.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, TextIO

from ast_onnx.atomic import atomic_path, check_writable, special_target, write_text_atomic
from ast_onnx.distributed.identity import describe, same_run
from ast_onnx.distributed.stages import RESULT_COLUMNS, import_pyarrow, result_schema
from ast_onnx.errors import InvalidOptionError, OutputError, ResumeError

logger = logging.getLogger(__name__)

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
#: Version of the sidecar's layout.
META_VERSION = 1
_REPLACE_HINT = "pass resume=False / --no-resume to replace it, or choose another output"


def output_format(path: str | os.PathLike) -> str:
    """``"jsonl"`` or ``"parquet"`` from the output's extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InvalidOptionError(
            f"output must end in one of {sorted(FORMATS)} (JSON lines or parquet), "
            f"got {str(path)!r}"
        )
    return FORMATS[suffix]


def meta_path(output: str | os.PathLike) -> Path:
    """The sidecar recording the identity of ``output``'s rows: ``OUTPUT.meta.json``."""
    output = Path(output)
    return output.with_name(output.name + ".meta.json")


def journal_path(output: str | os.PathLike) -> Path:
    """Where rows are appended: the output itself (``.jsonl``), or ``OUTPUT.partial.jsonl``."""
    output = Path(output)
    if output_format(output) == "jsonl":
        return output
    return output.with_name(output.name + ".partial.jsonl")


def _has_rows(output: Path) -> bool:
    return any(p.is_file() and p.stat().st_size > 0 for p in {output, journal_path(output)})


def check_output(
    output: str | os.PathLike, identity: dict[str, Any] | None = None, resume: bool = True
) -> Path:
    """Refuse, before a job starts, an output it could not write or must not resume.

    Args:
        output: ``.jsonl`` or ``.parquet`` path.
        identity: The run's :func:`~ast_onnx.distributed.identity.run_identity`; with
            ``resume``, an existing file's recorded identity must equal it.
        resume: The job will keep the file's rows (and append to it).

    Raises:
        ValueError: Not a ``.jsonl``/``.parquet`` name.
        OutputError: The folder is missing or read-only, the name is a directory or
            too long (for the output, its journal or its sidecar).
        ResumeError: ``resume`` and the file holds rows of another model or options,
            or has rows but no sidecar.
    """
    output = Path(output)
    output_format(output)
    if special_target(output):
        raise OutputError(
            f"--output {str(output)!r} is a device or FIFO: a Ray results file is read back "
            "to resume; name a regular .jsonl or .parquet file"
        )
    for path in dict.fromkeys([output, journal_path(output), meta_path(output)]):
        if os.path.islink(path):
            raise OutputError(
                f"--output {str(path)!r} is a symbolic link (to {os.readlink(path)!r}): a "
                "results file is appended to and rewritten; name the file itself"
            )
        check_writable(path, append=resume)
    if resume and _has_rows(output):
        if identity is not None:
            _check_identity(output, identity)
        else:  # malformed rows fail here, before Ray starts, not in the middle of the job
            _previous_rows(output)
    return output


def _previous_rows(output: Path) -> list[dict[str, Any]]:
    """Every row already in ``output`` (its parquet and journal), checked."""
    rows: list[dict[str, Any]] = []
    if output_format(output) == "parquet" and output.exists():
        rows += _read_parquet(output)
    journal = journal_path(output)
    return rows + (_read_journal(journal) if journal.exists() else [])


def _row_problem(row: Any) -> str | None:
    """Why ``row`` is not a result row (None when it is one)."""
    if not isinstance(row, dict) or "path" not in row or "error" not in row:
        return "is not an ast-classify result row"
    if not isinstance(row["path"], str):
        return f"is not an ast-classify result row (its path is a {type(row['path']).__name__})"
    if row["error"] is not None and not isinstance(row["error"], str):
        return f"is not an ast-classify result row (its error is a {type(row['error']).__name__})"
    return None


def _check_identity(output: Path, identity: dict[str, Any]) -> None:
    meta = meta_path(output)
    if not meta.is_file():
        # Say what is wrong with a foreign or undecodable file first (this reads it all,
        # but only on the way to refusing it).
        if output_format(output) == "parquet" and output.is_file():
            _read_parquet(output)
        if journal_path(output).is_file():
            _read_journal(journal_path(output))
        raise ResumeError(
            f"{output} has rows but no {meta.name} recording which model and options wrote "
            f"them (an older ast-onnx wrote it, or it was copied alone): refusing to add this "
            f"run's rows to it; {_REPLACE_HINT}"
        )
    try:
        recorded = json.loads(meta.read_text(encoding="utf-8"))["identity"]
        if not isinstance(recorded, dict):
            raise TypeError(f"identity is a {type(recorded).__name__}")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        raise ResumeError(f"cannot read {meta} ({e}): {_REPLACE_HINT}") from e
    if not same_run(recorded, identity):
        keys = (set(recorded) | set(identity)) - {"model"}
        differ = sorted(k for k in keys if recorded.get(k) != identity.get(k))
        raise ResumeError(
            f"{output} holds rows of {describe(recorded)}; this run is {describe(identity)} "
            f"(they differ in {', '.join(differ)}): refusing to mix their rows; {_REPLACE_HINT}"
        )


def _read_journal(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines results file; a torn last line is dropped."""
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except UnicodeDecodeError as e:
        raise ResumeError(
            f"{path} is not an ast-classify results file (not UTF-8 text: byte {e.start} "
            f"is {e.object[e.start : e.start + 1]!r}); refusing to resume into it: {_REPLACE_HINT}"
        ) from e
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            row = None
        problem = _row_problem(row)
        if problem is not None:
            if n == len(lines) and not line.endswith("\n"):
                logger.warning("%s: dropping a half-written last line", path)
                continue
            raise ResumeError(
                f"{path} line {n} {problem}; refusing to resume into it ({_REPLACE_HINT})"
            )
        rows.append(row)
    return rows


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import_pyarrow()
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # ArrowInvalid, OSError...: not a parquet file we can read
        raise ResumeError(f"cannot read {path} as parquet ({e}); {_REPLACE_HINT}") from e
    if not {"path", "error"} <= set(table.column_names):
        raise ResumeError(
            f"{path} is not an ast-classify results file (columns {table.column_names}); "
            f"{_REPLACE_HINT}"
        )
    rows = table.to_pylist()
    for n, row in enumerate(rows, 1):
        if (problem := _row_problem(row)) is not None:
            raise ResumeError(f"{path} row {n} {problem}; {_REPLACE_HINT}")
    return rows


def _dumps(row: dict[str, Any]) -> str:
    return json.dumps({k: row.get(k) for k in RESULT_COLUMNS}) + "\n"


class ResultWriter:
    """Appends result rows to the output; :meth:`close` finishes the file.

    Args:
        output: ``.jsonl`` (also ``.ndjson``) or ``.parquet`` path.
        resume: Keep the successful rows already there and report their paths in
            :attr:`done` (False: start the output over).
        identity: The run's :func:`~ast_onnx.distributed.identity.run_identity`,
            checked against the file's sidecar on resume and recorded in it (None: no
            check, no sidecar).

    Raises:
        OutputError: The output cannot be written (see :func:`check_output`).
        ResumeError: The existing file must not be resumed (see :func:`check_output`).
    """

    def __init__(
        self,
        output: str | os.PathLike,
        resume: bool = True,
        identity: dict[str, Any] | None = None,
    ) -> None:
        self.output = check_output(output, identity, resume)
        self.format = output_format(self.output)
        self.journal = journal_path(self.output)
        self._lock = _lock_output(self.output)
        try:
            kept = self._load_previous() if resume else []
        except BaseException:
            self._unlock()
            raise
        if not resume:
            self.journal.unlink(missing_ok=True)
            self.output.unlink(missing_ok=True)  # an old parquet must not outlive its sidecar
        if identity is not None:
            meta = {"ast_onnx_results": META_VERSION, "identity": identity}
            write_text_atomic(meta_path(self.output), json.dumps(meta, indent=2) + "\n")
        #: Paths that already have a successful row (skipped by a resumed run).
        self.done: set[str] = {r["path"] for r in kept}
        self.written = 0
        self._file: TextIO | None = self.journal.open("a", encoding="utf-8")

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing releases the lock
            self._lock = None

    def _load_previous(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        if self.format == "parquet" and self.output.exists():
            rows += _read_parquet(self.output)
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
        try:
            self._file.write("".join(_dumps(r) for r in rows))
            self._file.flush()
        except OSError as e:
            raise OutputError(f"cannot write {self.journal}: {e.strerror or e}") from e
        self.written += len(rows)

    def close(self) -> None:
        """Finish the output (for parquet: write it from the journal, remove the journal)."""
        if self._file is None:
            return
        self._file.close()
        self._file = None
        try:
            self._finish()
        finally:
            self._unlock()

    def _finish(self) -> None:
        if self.format == "parquet":
            pa = import_pyarrow()
            import pyarrow.parquet as pq

            table = pa.Table.from_pylist(_read_journal(self.journal), schema=result_schema())
            try:
                with atomic_path(self.output) as tmp:
                    pq.write_table(table, str(tmp))
            except OSError as e:
                raise OutputError(
                    f"cannot write {self.output} ({e.strerror or e}); the rows are kept in "
                    f"{self.journal}: run again to finish it"
                ) from e
            self.journal.unlink()

    def abort(self) -> None:
        """Stop without finishing: rows written so far stay in the journal for a resume."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._unlock()


def lock_path(output: str | os.PathLike) -> Path:
    """The lock file of ``output`` while a job writes it: ``OUTPUT.lock``."""
    output = Path(output)
    return output.with_name(output.name + ".lock")


def _lock_output(output: Path) -> int | None:
    """Lock ``output`` for this job (``flock`` on ``OUTPUT.lock``); the descriptor.

    A second job writing the same output at once would interleave and duplicate rows:
    it is refused at once. The lock goes with the process (also when it is killed); the
    empty lock file stays. Where ``fcntl`` is missing (Windows), no lock is taken.

    Raises:
        OutputError: Another job holds the lock, or the lock file cannot be opened.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    path = lock_path(output)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise OutputError(f"cannot open {path} to lock {output}: {e.strerror or e}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise OutputError(
            f"another job is writing {output} (it holds {path.name}): wait for it to finish, "
            "or choose another output"
        ) from None
    return fd


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a results file (``.jsonl`` or ``.parquet``), e.g. to check a finished job."""
    path = Path(path)
    if output_format(path) == "parquet":
        return _read_parquet(path)
    return _read_journal(path)
