"""``ast-classify``: classify audio files with an AST ONNX model.

Exit status (:mod:`ast_onnx.cli.exit_codes`): 0 all files classified; 1 the model cannot
be loaded, or some files failed (each reported on stderr and, with ``--json``, as an
error row; the others still classified and printed); 2 a usage error (a malformed
command line or an option value out of range); 130 interrupted (Ctrl-C).

Text output escapes control characters of labels and paths (:mod:`ast_onnx.cli.text`);
JSON output is exact and strict (never ``NaN``/``Infinity``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from ast_onnx.cli import classify_ray, exit_codes, stdout
from ast_onnx.cli.checks import check_model_argument
from ast_onnx.cli.logs import setup_logging
from ast_onnx.cli.text import escape_control, json_text
from ast_onnx.errors import AstOnnxError, item_error
from ast_onnx.frontend.files import find_audio_files
from ast_onnx.runtime.events import EventOptions
from ast_onnx.runtime.options import RuntimeOptions

PROG = "ast-classify"

#: Show a progress bar from this many files on (and only on a terminal).
PROGRESS_MIN_FILES = 4
#: Below that, show one for a batch of files (one long file) from this many windows on.
PROGRESS_MIN_WINDOWS = 32


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ast-classify",
        description="Classify audio files with an AST model exported by ast-export. "
        "Directories are searched recursively for audio files.",
        epilog=exit_codes.EPILOG,
    )
    p.add_argument(
        "model", metavar="MODEL.onnx", help="the ONNX model, or 'demo' (the bundled one)"
    )
    p.add_argument("audio", nargs="*", metavar="AUDIO", help="audio files or directories")
    p.add_argument(
        "--samples",
        action="store_true",
        help="also classify the sample WAVs bundled with ast-onnx (yes_0.wav, ...)",
    )
    p.add_argument("--top-k", type=int, default=5, help="labels per file (default 5)")
    RuntimeOptions.add_arguments(p.add_argument_group("Runtime options"))
    p.add_argument("--json", action="store_true", help="JSON lines: one object per file")
    p.add_argument("--windows", action="store_true", help="also print per-window scores")
    p.add_argument(
        "--events",
        action="store_true",
        help="detect sound events over the windows (JSON: an 'events' list per file)",
    )
    p.add_argument(
        "--threshold",
        type=_threshold,
        default=None,
        metavar="T|model",
        help="list every label scoring >= T (in [0, 1]) instead of the top-k, or >= the "
        "model's own thresholds ('model'); with --events, also the events' on threshold",
    )
    # The event rules' flags, the same as ast-stream's (its --threshold is the one above).
    EventOptions.add_arguments(
        p.add_argument_group("events (with --events)", "how window scores become events"),
        threshold=False,
    )
    p.add_argument(
        "--plot",
        metavar="OUT.png|DIR",
        default=None,
        help="with --events, draw spectrogram, top scores and events: one picture "
        "(.png/.svg/.pdf) for one file, or a folder for one PNG per file ([plot] extra)",
    )
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    classify_ray.add_arguments(p)
    return p


def _threshold(text: str) -> float | bool:
    """``--threshold``: a number in [0, 1], or ``model`` (True: the model's thresholds)."""
    if text.strip().lower() == "model":
        return True
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or 'model', got {text!r}")
    return value


def _progress(items: Iterator, total: int, enabled: bool):
    """Wrap ``items`` in a tqdm bar on stderr when enabled and tqdm is installed."""
    if not enabled:
        return items, None
    try:
        from tqdm import tqdm
    except ImportError:
        return items, None
    bar = tqdm(items, total=total, file=sys.stderr, unit="file", desc="ast-classify")
    return bar, bar


class WindowProgress:
    """A tqdm bar of the windows of a long file (``Runtime.classify_files``' ``progress``).

    Fewer files than :data:`PROGRESS_MIN_FILES` get no file bar, so a 20-minute file would
    otherwise be minutes of silence: from :data:`PROGRESS_MIN_WINDOWS` windows on, its
    windows are counted instead. A bar closes when its batch of files is scored.
    """

    def __init__(self, file: TextIO) -> None:
        self.file = file
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None and total >= PROGRESS_MIN_WINDOWS and done < total:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=total, file=self.file, unit="window", desc=PROG, leave=False)
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            if done >= total:
                self.bar.close()
                self.bar = None


def _format_text(result, windows: bool) -> str:
    """Human-readable lines of one result; labels and paths with control chars escaped."""
    lines = [f"{escape_control(result.path)}  ({result.duration:.2f} s)"]
    lines += [f"  {p.score:7.4f}  {escape_control(p.label)}" for p in result.labels]
    if windows:
        for w in result.windows:
            top = ", ".join(f"{escape_control(p.label)} {p.score:.3f}" for p in w.labels)
            lines.append(f"    [{w.start:8.2f} - {w.end:8.2f} s]  {top}")
        if result.windows_omitted:
            lines.append(f"    ({result.windows_omitted} later windows not kept: timeline cap)")
    for e in result.events:
        lines.append(
            f"    event [{e.onset:8.2f} - {e.offset:8.2f} s]  {escape_control(e.label)}  "
            f"peak {e.peak_score:.3f}  mean {e.mean_score:.3f}"
        )
    return "\n".join(lines)


def _format(path: str, result, args: argparse.Namespace) -> tuple[str | None, str | None]:
    """``(stdout line, stderr line)`` of one file's result; any failure is an error row."""
    if not isinstance(result, AstOnnxError):
        try:
            if not args.json:
                return _format_text(result, args.windows), None
            row = {**result.to_dict(windows=args.windows, events=args.events), "error": None}
            row["path"] = json_text(row["path"])  # strict JSON: no lone surrogates either
            return json.dumps(row, allow_nan=False), None  # strict JSON: no NaN/Infinity
        except Exception as e:  # a result that cannot be written is that file's error
            result = item_error(e, path)
    row = {"path": json_text(path), "error": json_text(result)}
    line = json.dumps(row) if args.json else None
    where = "" if path in str(result) else f"{path}: "
    return line, f"ast-classify: error: {escape_control(f'{where}{result}')}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.samples:
        from ast_onnx.data import sample_paths

        args.audio += [str(path) for path in sample_paths()]
    if not args.audio:
        parser.error("give AUDIO files or directories, or --samples")
    setup_logging(args.verbose)
    try:
        check_model_argument(args.model)
    except AstOnnxError as e:
        print(f"ast-classify: error: {escape_control(e)}", file=sys.stderr)
        return exit_codes.for_error(e)
    try:
        if not (args.ray or args.output) and (status := stdout.stdout_missing(PROG)) is not None:
            return status
        if args.ray or args.output:
            if args.plot:
                print("ast-classify: error: --plot is not available with --ray", file=sys.stderr)
                return exit_codes.USAGE
            if args.threshold is not None:
                print(
                    "ast-classify: error: --threshold is not available with --ray/--output yet",
                    file=sys.stderr,
                )
                return exit_codes.USAGE
            if EventOptions.from_args(args) != EventOptions():  # Ray: the default rules
                print(
                    "ast-classify: error: the event options (--ignore, --min-duration...) are "
                    "not available with --ray/--output yet (--events takes the default rules)",
                    file=sys.stderr,
                )
                return exit_codes.USAGE
            return classify_ray.run(args)
        return stdout.finish(PROG, _classify(args))
    except KeyboardInterrupt:
        print("ast-classify: interrupted", file=sys.stderr)
        return exit_codes.INTERRUPTED


def _classify(args: argparse.Namespace) -> int:
    from ast_onnx.frontend import AUDIO_EXTENSIONS
    from ast_onnx.runtime import Runtime

    if args.top_k < 1:
        print(f"ast-classify: error: --top-k must be >= 1, got {args.top_k}", file=sys.stderr)
        return exit_codes.USAGE
    if args.embedding:
        print(
            "ast-classify: error: --embedding is for --ray jobs; in-process, ast-embed writes "
            "the vectors",
            file=sys.stderr,
        )
        return exit_codes.USAGE
    files, failures = find_audio_files(args.audio, AUDIO_EXTENSIONS)
    for failure in failures:
        print(f"ast-classify: error: {escape_control(failure)}", file=sys.stderr)
    try:  # refuse a bad --plot before the model loads
        plots = _plot_targets(args, files)
    except AstOnnxError as e:
        print(f"ast-classify: error: {escape_control(e)}", file=sys.stderr)
        return exit_codes.for_error(e)
    try:
        runtime = Runtime(args.model, RuntimeOptions.from_args(args))
    except (AstOnnxError, ValueError) as e:  # a model that cannot be loaded is bad input
        print(f"ast-classify: error: {escape_control(e)}", file=sys.stderr)
        return exit_codes.for_error(e)

    terminal = not args.no_progress and sys.stderr.isatty()
    show = terminal and len(files) >= PROGRESS_MIN_FILES
    try:  # options the model cannot take (threshold=model without thresholds) are usage errors
        events = _event_options(args)
        runtime.resolve_threshold(args.threshold)
        stream = runtime.classify_files(  # an embeddings-only model is refused here
            files,
            top_k=args.top_k,
            events=events,
            threshold=args.threshold,
            progress=WindowProgress(sys.stderr) if terminal and not show else None,
        )
    except AstOnnxError as e:
        print(f"ast-classify: error: {escape_control(e)}", file=sys.stderr)
        return exit_codes.for_error(e)
    results, bar = _progress(stream, len(files), show)
    write = bar.write if bar else print
    failed = len(failures)
    try:
        for path, result in results:
            line, message = _format(path, result, args)
            if message is None and path in plots:
                message = _plot(runtime, path, result, plots[path], events)
            if message is not None:
                failed += 1
                write(message, file=sys.stderr)
            if line is not None:
                try:
                    write(line, file=sys.stdout)
                except OSError as e:  # `| head` closed the pipe, or the disk is full
                    return stdout.write_failed(PROG, e) or (exit_codes.FAILED if failed else 0)
    finally:
        if bar is not None:
            bar.close()
    return exit_codes.FAILED if failed else exit_codes.OK


def _plot_targets(args: argparse.Namespace, files: list[str]) -> dict:
    """``{file: picture}`` for ``--plot`` ({} without it); checked before any work."""
    if args.plot is None:
        return {}
    from ast_onnx.errors import InvalidOptionError
    from ast_onnx.plot import matplotlib_available, plot_targets

    if not args.events:
        raise InvalidOptionError("--plot draws the events: add --events")
    matplotlib_available()
    return plot_targets(args.plot, files)


def _plot(runtime, path: str, result, target, events) -> str | None:
    """Write one file's picture; the error line if that fails (the batch goes on)."""
    from ast_onnx.plot import save_classification_plot

    try:
        save_classification_plot(runtime, result, target, events)
    except Exception as e:  # a picture that cannot be drawn is that file's error
        return f"ast-classify: error: {escape_control(item_error(e, path))}"
    return None


def _event_options(args: argparse.Namespace) -> EventOptions | bool:
    """What ``classify_files(events=...)`` gets: False, or the rules of the event flags.

    Raises:
        InvalidOptionError: Event flags without ``--events``, or a bad value.
    """
    number = args.threshold if isinstance(args.threshold, float) else None
    rules = EventOptions.from_args(args, threshold=number)  # None: the model's thresholds
    if not args.events:
        if rules != EventOptions(threshold=number):
            from ast_onnx.errors import InvalidOptionError

            raise InvalidOptionError(
                "the event options (--ignore, --min-duration...) need --events"
            )
        return False
    return rules


if __name__ == "__main__":
    sys.exit(main())
