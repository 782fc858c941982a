"""``ast-classify --ray`` and ``ast-embed --ray``: the Ray Data options and their run.

Only declares arguments and calls :func:`ast_onnx.distributed.classify_to_file`;
Ray is imported when ``--ray`` is given, never by ``ast-classify`` otherwise.
``ast-embed --ray`` is the same job with ``embedding`` on (``RayOptions.embedding``):
the same resumable results file, each row with its ``embedding``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ast_onnx.cli import exit_codes


def add_arguments(parser: argparse.ArgumentParser, embed: bool = False) -> None:
    """Add the ``--ray`` option group to ast-classify's parser (``embed``: ast-embed's,
    which has its own ``--output`` and always writes the vectors)."""
    g = parser.add_argument_group(
        "Ray Data batch tagging (pip install 'ast-onnx[distributed]')",
        "Decode and features in Ray CPU tasks, scoring in an actor pool; one row per file "
        "in --output. Re-running with the same --output skips files already done "
        "and retries files that failed.",
    )
    g.add_argument("--ray", action="store_true", help="run on Ray Data (needs --output)")
    g.add_argument(
        "--address",
        default=None,
        metavar="ADDR",
        help="Ray cluster: 'auto', 'ray://HOST:10001' (default: start a local Ray instance)",
    )
    if not embed:
        g.add_argument(
            "--output",
            metavar="RESULTS.jsonl|.parquet",
            help="results file (JSON lines or parquet)",
        )
    g.add_argument("--num-actors", type=int, default=1, help="scoring actors (default 1)")
    g.add_argument(
        "--num-gpus",
        type=float,
        default=None,
        help="GPUs per actor (default: 1 with --provider cuda/tensorrt, or auto on GPU nodes)",
    )
    g.add_argument("--actor-cpus", type=float, default=1.0, help="CPUs per actor (default 1)")
    g.add_argument("--no-resume", action="store_true", help="replace --output instead of resuming")
    if not embed:
        g.add_argument(
            "--embedding",
            action="store_true",
            help="add each file's embedding vector to its row (the model needs an embedding "
            "output: ast-export --outputs logits,embedding)",
        )


def run(args: argparse.Namespace, prog: str = "ast-classify") -> int:
    """Run ast-classify (or ast-embed, ``prog``) with ``--ray``; returns the exit status.

    0 every file done; 1 some files failed (error rows), or a bad model, an
    output that cannot be written or must not be resumed, an unreachable cluster;
    2 bad usage; 130 interrupted (finished rows stay in the output).
    """
    if not args.ray or not args.output:
        need = "--output needs --ray" if args.output else "--ray needs --output FILE"
        print(f"{prog}: error: {need}", file=sys.stderr)
        return exit_codes.USAGE
    if args.windows:
        print(f"{prog}: error: --windows is not available with --ray", file=sys.stderr)
        return exit_codes.USAGE
    from ast_onnx.errors import AstOnnxError, InvalidOptionError

    try:
        summary = _run(args)
    except InvalidOptionError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return exit_codes.USAGE
    except AstOnnxError as e:  # a bad model, output or resume file
        print(f"{prog}: error: {e}", file=sys.stderr)
        return exit_codes.FAILED
    except ValueError as e:  # RayOptions.check, the output's extension
        print(f"{prog}: error: {e}", file=sys.stderr)
        return exit_codes.USAGE
    except (ConnectionError, OSError) as e:  # the cluster, or the disk, failed under us
        print(f"{prog}: error: {e}", file=sys.stderr)
        return exit_codes.FAILED
    except KeyboardInterrupt:
        print(
            f"{prog}: interrupted; finished rows are in {args.output}: run the same "
            "command again to resume",
            file=sys.stderr,
        )
        return exit_codes.INTERRUPTED
    for problem in summary.problems:
        print(f"{prog}: error: {problem}", file=sys.stderr)
    done = "embedded" if prog == "ast-embed" else "classified"
    print(
        f"{prog}: {summary.files} file(s): {summary.classified} {done}, "
        f"{summary.failed} failed (error rows), {summary.skipped} already in {args.output}; "
        f"{summary.seconds:.1f} s",
        file=sys.stderr,
    )
    return exit_codes.FAILED if summary.failed or summary.problems else exit_codes.OK


def _run(args: argparse.Namespace):
    """Check everything that can be checked without Ray, then start Ray and run the job."""
    from ast_onnx.distributed import RayOptions, classify_to_file, init_ray, model_spec
    from ast_onnx.distributed.identity import run_identity
    from ast_onnx.distributed.output import check_output, output_format
    from ast_onnx.runtime.options import RuntimeOptions

    output_format(args.output)
    options = RayOptions(
        RuntimeOptions.from_args(args),
        top_k=args.top_k,
        num_actors=args.num_actors,
        actor_cpus=args.actor_cpus,
        num_gpus=args.num_gpus,
        events=bool(args.events),  # the default rules, as ast-classify --events
        embedding=args.embedding,
    )
    options.check()
    resume = not args.no_resume
    check_output(args.output, resume=resume)  # an unwritable output fails before the model
    spec = model_spec(args.model, options)  # a bad model fails before Ray starts
    identity = run_identity(spec, options.top_k, options.events, options.embedding)
    check_output(args.output, identity, resume)  # ...another's rows too
    quiet = not args.verbose
    init_ray(args.address, logging_level=logging.WARNING if quiet else logging.INFO)
    if quiet or args.no_progress:
        _quiet_ray_data()
    return classify_to_file(spec, args.audio, args.output, options, resume=resume)


def _quiet_ray_data() -> None:
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
