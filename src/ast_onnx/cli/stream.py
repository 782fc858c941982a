"""``ast-stream``: tag live audio and print sound events as JSON lines as they close.

    ffmpeg -i rtsp://camera/stream -f s16le -ac 1 -ar 16000 - | ast-stream model.onnx -
    ast-stream model.onnx recording.wav --realtime --open-events
    ast-stream model.onnx --mic --duration 60
    cat clip.wav | ast-stream demo -     # a WAV on stdin is read by its header

Output (stdout, one JSON object per line, flushed at once):

- a closed event: ``{"label", "index", "onset", "offset", "peak_score", "mean_score"}``;
- with ``--open-events``, an event as it opens: ``{"type": "open", "label", "index",
  "onset", "peak_score"}``;
- with ``--windows``, each window: ``{"type": "window", "start", "end", "labels"}``.

End of input (or ``--duration``) flushes the stream: the tail is scored and open
events close. A live source (``--mic``, ``--realtime``) that processing trails by
seconds is warned about as the lag doubles, and stopped past ``--max-lag``
(:mod:`ast_onnx.cli.lag`). Exit status: 0 at the end of input (also when stdout is
closed early, e.g. by ``| head``); 1 bad audio in the input, or a live source more than
``--max-lag`` behind (what came before is flushed); 2 unusable model, options or source;
130 Ctrl-C or SIGTERM (after flushing: ``docker stop`` and ``systemctl stop`` send SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from ast_onnx.cli import exit_codes, stdout
from ast_onnx.cli.checks import check_model_argument
from ast_onnx.cli.interrupt import terminate_as_interrupt
from ast_onnx.cli.lag import DEFAULT_MAX_LAG, FellBehindError, LagMonitor
from ast_onnx.cli.logs import setup_logging
from ast_onnx.cli.text import escape_control
from ast_onnx.runtime.events import EventOptions
from ast_onnx.runtime.options import RuntimeOptions

PROG = "ast-stream"
#: Longest ``--chunk`` (seconds per read): a read is held in memory at once.
MAX_CHUNK_SECONDS = 60.0
#: Most interleaved ``--channels`` on a pipe or microphone.
MAX_CHANNELS = 64


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Tag live audio with an AST model; print events as JSON lines.",
        epilog=exit_codes.EPILOG,
    )
    p.add_argument(
        "model", metavar="MODEL.onnx", help="the ONNX model, or 'demo' (the bundled one)"
    )
    p.add_argument(
        "source",
        nargs="?",
        metavar="SOURCE",
        help="'-' for raw PCM (or a WAV stream) on stdin, or an audio file; omit with --mic",
    )
    src = p.add_argument_group("source")
    src.add_argument("--mic", action="store_true", help="record from the microphone ([mic])")
    src.add_argument("--device", default=None, help="input device for --mic (name or index)")
    src.add_argument(
        "--format",
        default="s16le",
        choices=["s16le", "s32le", "f32le"],
        help="raw PCM format on stdin (default s16le)",
    )
    src.add_argument(
        "--rate",
        type=int,
        default=None,
        help="sample rate of stdin / the mic (default: the model's; a file has its own); "
        "another rate than the model's is resampled as it arrives",
    )
    src.add_argument(
        "--channels",
        type=int,
        default=1,
        help=f"interleaved channels, 1 to {MAX_CHANNELS} (default 1)",
    )
    src.add_argument("--realtime", action="store_true", help="pace a file like a live source")
    src.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after SECONDS of audio (omit: until the input ends)",
    )
    src.add_argument(
        "--chunk",
        type=float,
        default=0.1,
        help=f"seconds per read, at most {MAX_CHUNK_SECONDS:g} (default 0.1)",
    )
    src.add_argument(
        "--max-lag",
        type=float,
        default=DEFAULT_MAX_LAG,
        metavar="SECONDS",
        help="stop when processing trails a live source (--mic, --realtime) by more than "
        f"SECONDS (default {DEFAULT_MAX_LAG:g}; 0: no limit); lag is warned about as it grows",
    )
    # The event rules' flags (--threshold, --ignore, --min-duration, --median-filter...),
    # the same as ast-classify --events'.
    EventOptions.add_arguments(p.add_argument_group("events"))
    out = p.add_argument_group("output")
    out.add_argument("--open-events", action="store_true", help="also print events as they open")
    out.add_argument("--windows", action="store_true", help="also print every window's top-k")
    out.add_argument("--top-k", type=int, default=3, help="labels per --windows line (default 3)")
    out.add_argument(
        "--plot",
        metavar="OUT.png",
        default=None,
        help="at the end, draw spectrogram, top scores and events to OUT (.png/.svg/.pdf; "
        "[plot] extra)",
    )
    # The Runtime's own flags (--provider, --threads, --hop: seconds between windows, whole
    # 10 ms frames, default half a window...), the same as ast-classify's.
    RuntimeOptions.add_arguments(p.add_argument_group("Runtime options"))
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    return p


def check_options(args: argparse.Namespace) -> None:
    """Refuse source options out of range before the model loads (a usage error, exit 2).

    Raises:
        InvalidOptionError: ``--chunk``, ``--duration``, ``--channels``, ``--rate`` or
            ``--max-lag`` out of range (infinite or NaN seconds, 0 Hz, 10^9 channels).
    """
    from ast_onnx.errors import InvalidOptionError
    from ast_onnx.frontend.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

    if not 0 < args.chunk <= MAX_CHUNK_SECONDS:  # also refuses NaN and inf
        raise InvalidOptionError(
            f"--chunk must be a number of seconds > 0 and at most {MAX_CHUNK_SECONDS:g}, "
            f"got {args.chunk}"
        )
    if args.duration is not None and not (args.duration > 0 and math.isfinite(args.duration)):
        raise InvalidOptionError(
            f"--duration must be a finite number of seconds > 0 (omit it to read to the "
            f"end), got {args.duration}"
        )
    if not 1 <= args.channels <= MAX_CHANNELS:
        raise InvalidOptionError(
            f"--channels must be an integer from 1 to {MAX_CHANNELS}, got {args.channels}"
        )
    if args.rate is not None and not MIN_SAMPLE_RATE <= args.rate <= MAX_SAMPLE_RATE:
        raise InvalidOptionError(
            f"--rate must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz, got "
            f"{args.rate} (omit --rate for the model's rate)"
        )
    if not args.max_lag >= 0:  # also refuses NaN
        raise InvalidOptionError(f"--max-lag must be >= 0 seconds, got {args.max_lag}")


def open_source(
    args: argparse.Namespace, model_rate: int, max_seconds: float | None = None
) -> tuple[int, Iterator[Any]]:
    """``(sample_rate, chunks)`` of the source the arguments name."""
    from ast_onnx.cli import sources
    from ast_onnx.errors import InvalidAudioError, InvalidOptionError
    from ast_onnx.frontend.audio import check_sample_rate

    if args.mic == (args.source is not None):
        raise InvalidOptionError("give either SOURCE ('-' or a file) or --mic")
    check_options(args)
    rate = model_rate if args.rate is None else args.rate
    try:
        check_sample_rate(rate, "--rate")
    except InvalidAudioError as e:  # a flag, so a usage error (exit 2)
        raise InvalidOptionError(str(e)) from None
    block = max(1, round(args.chunk * rate))
    if args.mic:
        device = int(args.device) if args.device and args.device.isdigit() else args.device
        return rate, sources.microphone_chunks(rate, args.channels, block, device)
    if args.source == "-":
        header, pipe = sources.open_pipe(sys.stdin.buffer)
        if header is not None:  # a WAV: its header says what the samples are
            _take_header(args, header)
            rate = header.sample_rate
            block = max(1, round(args.chunk * rate))
        return rate, sources.pcm_chunks(pipe, args.format, args.channels, block)
    rate, chunks = sources.file_chunks(args.source, args.chunk, max_seconds)
    return rate, sources.paced(chunks, rate) if args.realtime else chunks


def _take_header(args: argparse.Namespace, header: Any) -> None:
    """Set ``--format``/``--channels`` from a WAV header on stdin; refuse flags it contradicts.

    ``--rate``, and ``--format``/``--channels`` away from their defaults, must agree with
    the header (they describe raw PCM; a WAV describes itself).
    """
    from ast_onnx.errors import InvalidOptionError

    given = {
        "--rate": (args.rate, header.sample_rate, None),
        "--format": (args.format, header.fmt, "s16le"),
        "--channels": (args.channels, header.channels, 1),
    }
    for flag, (value, wav, default) in given.items():
        if value not in (default, wav):
            raise InvalidOptionError(
                f"stdin is a WAV of {header.channels} channel(s) of {header.fmt} at "
                f"{header.sample_rate} Hz, but {flag} {value} was given: drop {flag}"
            )
    args.format, args.channels = header.fmt, header.channels


def live_monitor(args: argparse.Namespace, rate: int) -> LagMonitor | None:
    """A :class:`~ast_onnx.cli.lag.LagMonitor` for a live source, None for the others."""
    if not (args.mic or args.realtime):
        return None
    return LagMonitor(rate, max_lag=args.max_lag or None)


def limited(chunks: Iterator[Any], frames: int | None) -> Iterator[Any]:
    """The chunks up to ``frames`` sample frames in all (all of them for None)."""
    if frames is None:
        yield from chunks
        return
    for chunk in chunks:
        if chunk.shape[0] >= frames:
            yield chunk[:frames]
            return
        frames -= chunk.shape[0]
        yield chunk


class Printer:
    """Writes a :class:`~ast_onnx.runtime.stream.StreamResult` as JSON lines."""

    def __init__(self, args: argparse.Namespace, out=None) -> None:
        self.open, self.windows = args.open_events, args.windows
        self.out = out or sys.stdout

    def __call__(self, result: Any) -> None:
        lines = []
        if self.windows:
            lines += [{"type": "window", **w.to_dict()} for w in result.windows]
        if self.open:
            for e in result.opened:
                d = e.to_dict()
                lines.append(
                    {
                        "type": "open",
                        **{k: d[k] for k in ("label", "index", "onset")},
                        "peak_score": d["peak_score"],
                    }
                )
        lines += [e.to_dict() for e in result.events]
        try:
            for line in lines:
                self.out.write(json.dumps(line) + "\n")
            if lines:
                self.out.flush()
        except OSError as e:  # `| head` closed the pipe, or the disk is full
            raise stdout.OutputGone(e) from e


def run(args: argparse.Namespace) -> int:
    from ast_onnx.errors import AstOnnxError, InvalidAudioError
    from ast_onnx.runtime import Runtime

    try:
        if args.plot:  # a bad picture path or a missing extra fails before the work
            from ast_onnx.plot import matplotlib_available, picture_target

            matplotlib_available()
            picture_target(args.plot)
        check_options(args)
        check_model_argument(args.model)
        runtime = Runtime(args.model, RuntimeOptions.from_args(args))
        rate, chunks = open_source(args, runtime.sample_rate, runtime.max_audio_seconds)
        channels = None if args.source not in (None, "-") else args.channels  # a file: its own
        rules = EventOptions.from_args(args)
        stream = runtime.stream(
            sample_rate=rate,
            events=rules,
            channels=channels,
            top_k=args.top_k,
        )
        recorder = _recorder(runtime, stream, rules) if args.plot else None
    except (AstOnnxError, ValueError) as e:
        print(f"{PROG}: error: {escape_control(e)}", file=sys.stderr)
        return exit_codes.for_error(e)
    frames = None if args.duration is None else round(args.duration * rate)
    emit, status = Printer(args), 0
    source = recorder or stream  # the recorder pushes through the stream
    lag = live_monitor(args, rate)
    try:
        try:
            for chunk in limited(chunks, frames):
                if lag is not None:
                    lag.arrived(chunk.shape[0])
                emit(source.push(chunk))
                if lag is not None:
                    lag.processed()
        except (InvalidAudioError, FellBehindError) as e:
            print(f"{PROG}: error: at {stream.seconds:.3f} s: {escape_control(e)}", file=sys.stderr)
            status = exit_codes.FAILED
        except KeyboardInterrupt:
            status = exit_codes.INTERRUPTED
        finally:
            getattr(chunks, "close", lambda: None)()  # release the device or file now
        emit(source.flush())
    except stdout.OutputGone as e:  # the reader went away (`| head`: exit 0), or a full disk
        status = stdout.write_failed(PROG, e.error) or status
    if recorder is not None and not _draw(recorder, args):
        status = status or exit_codes.FAILED
    return status


def _recorder(runtime: Any, stream: Any, rules: Any) -> Any:
    """A :class:`~ast_onnx.plot.StreamRecorder` of ``stream``, with its event thresholds."""
    from ast_onnx.plot import StreamRecorder, event_thresholds

    return StreamRecorder(stream, event_thresholds(runtime.labels, runtime.thresholds, rules))


def _draw(recorder: Any, args: argparse.Namespace) -> bool:
    """Draw what the stream saw to ``--plot``; False (and one line on stderr) if that fails."""
    from ast_onnx.plot import clock, draw, save_figure

    recorder.flush()  # a no-op after the stream's flush; closes the timeline after `| head`
    name = "microphone" if args.mic else "stdin" if args.source == "-" else args.source
    title = f"{PROG} {name}  ({clock(recorder.timeline.duration)})"
    try:
        save_figure(draw(recorder.timeline, title=title), args.plot)
    except Exception as e:
        print(f"{PROG}: error: --plot {args.plot}: {escape_control(e)}", file=sys.stderr)
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if (status := stdout.stdout_missing(PROG)) is not None:
        return status
    try:
        with terminate_as_interrupt():  # SIGTERM (docker/systemctl stop) flushes as Ctrl-C
            return stdout.finish(PROG, run(args))
    except KeyboardInterrupt:  # Ctrl-C while loading: nothing to flush
        return exit_codes.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
