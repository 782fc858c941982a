"""``ast-triton``: run a local Triton server on a model repository (nvidia-pytriton's binary).

Only parses arguments and calls :mod:`ast_onnx.triton.server`.

    ast-triton serve REPO [--http-port N] [--grpc-port N] [--metrics-port N]
                          [--max-request-mb MB] [--max-restarts N] [-- ARGS...]
    ast-triton check      # is the local server usable from this environment?

Arguments after ``--`` go to ``tritonserver`` unchanged (e.g. ``--log-verbose=1``).
Exit status: the server's own; 130 after Ctrl-C, 0 after SIGTERM; 1 when the server
cannot start (a one-line error naming what is missing); 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ast_onnx.cli.logs import setup_logging
from ast_onnx.errors import AstOnnxError


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port must be an integer in [1, 65535], got {text!r}")
    return port


def _positive_mb(text: str) -> float:
    try:
        mb = float(text)
    except ValueError:
        mb = -1.0
    if not 0 < mb <= 1 << 20:
        raise argparse.ArgumentTypeError(f"expected megabytes in (0, 1048576], got {text!r}")
    return mb


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    from ast_onnx.triton.front import DEFAULT_MAX_REQUEST_BYTES
    from ast_onnx.triton.server import DEFAULT_PORTS, HOST, MAX_RESTARTS, RESTART_WINDOW_S

    p = argparse.ArgumentParser(
        prog="ast-triton",
        description="Run the Triton Inference Server bundled with nvidia-pytriton "
        f"(extra [triton-local]) on {HOST}, in the foreground.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="serve a model repository (Ctrl-C stops it)",
        description="Serve REPO (written by ast-export --triton-repo DIR --triton-backend "
        "python). Arguments after -- are passed to tritonserver.",
    )
    serve.add_argument("repo", metavar="REPO", help="the model repository")
    for name, default in zip(("http", "grpc", "metrics"), DEFAULT_PORTS, strict=True):
        serve.add_argument(
            f"--{name}-port", type=_port, default=default, metavar="N", help=f"default {default}"
        )
    serve.add_argument(
        "--max-request-mb",
        type=_positive_mb,
        default=DEFAULT_MAX_REQUEST_BYTES / (1 << 20),
        metavar="MB",
        help="largest HTTP request body, in MiB (default %(default)g); larger ones get 413",
    )
    serve.add_argument(
        "--max-restarts",
        type=_count,
        default=MAX_RESTARTS,
        metavar="N",
        help=f"restart a crashed server at most N times in {RESTART_WINDOW_S:.0f} s "
        "(default %(default)s; 0: exit with it)",
    )
    serve.add_argument("-v", "--verbose", action="store_true", help="log the server command")
    sub.add_parser("check", help="say whether the local server can run from this environment")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in args_list:
        cut = args_list.index("--")
        args_list, extra = args_list[:cut], args_list[cut + 1 :]
    args = build_parser().parse_args(args_list)
    if extra and args.command != "serve":
        build_parser().error("arguments after -- are for 'serve' only")
    from ast_onnx.triton import server

    try:
        if args.command == "check":
            install = server.find_triton()
            print(f"tritonserver  {install.binary}\nstub          {install.stub}")
            print(f"libpython     {install.libpython}\npython        {sys.executable}")
            return 0
        setup_logging(args.verbose)
        ports = (args.http_port, args.grpc_port, args.metrics_port)
        return server.serve(
            args.repo,
            ports=ports,
            extra_args=extra,
            max_request_bytes=int(args.max_request_mb * (1 << 20)),
            max_restarts=args.max_restarts,
        )
    except AstOnnxError as e:
        print(f"ast-triton: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
