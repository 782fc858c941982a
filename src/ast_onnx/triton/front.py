"""A small validating HTTP front for the local ``tritonserver``: lies about sizes never reach it.

The ``tritonserver`` that nvidia-pytriton ships (the newest, 0.7.0) has no
``--http-max-input-size`` and trusts the shape an HTTP infer request declares: a
request declaring ``waveform`` [1, 10^12] with 16,000 values makes it allocate 4 TB
and abort (``std::bad_alloc``, signal 6) when the data is JSON. Its gRPC endpoint
refuses the same requests. So ``ast-triton serve`` puts this front on the
public HTTP port and runs the server's HTTP endpoint on an internal loopback port.

For every request the front checks, before anything reaches the server:

- the body has a ``Content-Length`` of at most ``max_request_bytes`` (default
  :data:`DEFAULT_MAX_REQUEST_BYTES`, 64 MiB: the default of Triton's own
  ``--http-max-input-size`` in later releases); chunked or compressed bodies are refused
  (a compressed body could inflate to anything);
- for an infer request (``POST .../infer``): every input's shape is a list of
  non-negative integers, and what it declares (elements x the datatype's size) equals
  what it carries: the JSON ``data`` elements, its ``binary_data_size``, or its
  shared-memory byte size; the binary sizes add up to the body.

A refused request gets Triton's own error form (``{"error": "..."}``, status 400, 411,
413 or 415) naming what was wrong; anything else is forwarded unchanged. Memory is
bounded: binary tensor data is streamed to the server in 1 MiB blocks; only JSON (the
infer header, or a whole JSON body) is held and parsed, costing about
:data:`JSON_MEMORY_FACTOR` x its size, within a budget of :data:`BUFFER_BUDGET_FACTOR` x
``max_request_bytes`` over all requests at once (a request waits for its share); at most
:data:`MAX_CONNECTIONS` client connections are open at once, each silent for at most
:data:`CLIENT_TIMEOUT_S` seconds.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)

#: Largest request body accepted by default (Triton's later ``--http-max-input-size``).
DEFAULT_MAX_REQUEST_BYTES = 64 << 20
#: Memory for parsed JSON over all requests at once, in units of ``max_request_bytes``.
BUFFER_BUDGET_FACTOR = 4
#: Memory a JSON body takes once parsed, per byte (measured: 64 MiB of ``0.1,`` -> 192 MiB
#: peak with fractions parsed to one shared object; 706 MiB as Python floats).
JSON_MEMORY_FACTOR = 4
#: Seconds a client may stay silent mid-request (bounds slow senders).
CLIENT_TIMEOUT_S = 60.0
#: Seconds to wait for the server's answer (a long clip on a busy instance is slow).
SERVER_TIMEOUT_S = 600.0
#: Client connections served at once; more are closed at once (each holds a thread).
MAX_CONNECTIONS = 256
#: Seconds a refused client's unread body is skipped before its connection closes.
LINGER_S = 2.0
#: Bytes per element of Triton's fixed-size datatypes (BYTES is variable).
DTYPE_BYTES = {
    "BOOL": 1,
    "UINT8": 1,
    "UINT16": 2,
    "UINT32": 4,
    "UINT64": 8,
    "INT8": 1,
    "INT16": 2,
    "INT32": 4,
    "INT64": 8,
    "FP16": 2,
    "BF16": 2,
    "FP32": 4,
    "FP64": 8,
}
_CHUNK = 1 << 20
_INFER = re.compile(r"^/v2/models/[^?]+/infer/?(\?.*)?$")
_HOP_BY_HOP = frozenset(
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "expect",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ]
)


class Refused(Exception):
    """A request the front answers itself: HTTP ``status`` and a message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _zero(_text: str) -> float:
    return 0.0


def _count_leaves(data: Any) -> int:
    """Elements of a JSON ``data`` value: nested lists flattened (iteratively: no recursion)."""
    count, stack = 0, [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        else:
            count += 1
    return count


def _declared(tensor: dict, where: str) -> tuple[int, int | None]:
    """``(elements, bytes)`` a tensor declares; ``bytes`` None for BYTES tensors."""
    shape, dtype = tensor.get("shape"), tensor.get("datatype")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise Refused(400, f"{where}: shape must be a list of integers >= 0, got {shape!r:.80}")
    if dtype != "BYTES" and dtype not in DTYPE_BYTES:
        raise Refused(400, f"{where}: unknown datatype {dtype!r:.40}")
    elements = math.prod(shape)  # Python ints: no overflow
    return elements, None if dtype == "BYTES" else elements * DTYPE_BYTES[dtype]


def check_infer_header(header: Any, binary_bytes: int) -> None:
    """Refuse an infer request whose inputs declare other sizes than they carry.

    Args:
        header: The request's JSON (the whole body, or its ``Inference-Header`` part).
        binary_bytes: Bytes of binary tensor data after the JSON.

    Raises:
        Refused: With the input's name, its declared and carried sizes.
    """
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise Refused(400, "an infer request must be a JSON object with an 'inputs' list")
    carried = 0
    for i, tensor in enumerate(header["inputs"]):
        if not isinstance(tensor, dict):
            raise Refused(400, f"inputs[{i}] must be a JSON object")
        where = f"input {str(tensor.get('name'))!r:.80}"
        elements, size = _declared(tensor, where)
        params = tensor.get("parameters") or {}
        if not isinstance(params, dict):
            raise Refused(400, f"{where}: parameters must be a JSON object")
        declared = f"shape {tensor['shape']} ({elements} elements of {tensor['datatype']}"
        declared += ")" if size is None else f", {size} bytes)"
        if "binary_data_size" in params:
            n = params["binary_data_size"]
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise Refused(400, f"{where}: binary_data_size must be an integer >= 0")
            if size is not None and n != size:
                raise Refused(400, f"{where} declares {declared} but carries {n} bytes")
            carried += n
        elif "shared_memory_region" in params:
            n = params.get("shared_memory_byte_size")
            if size is not None and n != size:
                raise Refused(400, f"{where} declares {declared} but maps {n!r:.40} bytes")
        elif "data" in tensor:
            n = _count_leaves(tensor["data"])
            if n != elements:
                raise Refused(400, f"{where} declares {declared} but carries {n} elements")
        else:
            raise Refused(400, f"{where} carries no data")
    if carried != binary_bytes:
        raise Refused(
            400,
            f"the inputs' binary_data_size add up to {carried} bytes, the body holds "
            f"{binary_bytes} after its JSON header",
        )


class _Budget:
    """Bytes of JSON held over all requests; a request waits until its share is free."""

    def __init__(self, total: int):
        self.total, self.used = total, 0
        self.cond = threading.Condition()

    def acquire(self, n: int) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self.used + n <= self.total, CLIENT_TIMEOUT_S):
                raise Refused(503, "the server is busy with large requests: retry later")
            self.used += n

    def release(self, n: int) -> None:
        with self.cond:
            self.used -= n
            self.cond.notify_all()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = CLIENT_TIMEOUT_S
    server: FrontServer

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    def _handle(self) -> None:
        held, head = 0, b""
        self.declared = 0  # Content-Length, once read
        self.consumed = 0  # body bytes read: a refusal skips the rest
        try:
            length = self._length()
            if length and _INFER.match(self.path) and self.command == "POST":
                size = self._json_length(length)
                held = min(self.server.budget.total, JSON_MEMORY_FACTOR * size)
                self.server.budget.acquire(held)
                head = self._read(size)
                try:  # fractions are only counted: one shared object for all of them
                    header = json.loads(head, parse_float=_zero)
                except (ValueError, RecursionError) as e:
                    raise Refused(400, f"the infer request's JSON is invalid: {e}") from e
                check_infer_header(header, length - size)
            self._forward(head, length - len(head))
        except Refused as e:
            self._refuse(e, self.declared - self.consumed)
        except (OSError, http.client.HTTPException) as e:
            logger.info("request %s %s: %s", self.command, self.path[:80], e)
            self.close_connection = True
        finally:
            if held:
                self.server.budget.release(held)

    def _length(self) -> int:
        if self.headers.get("Transfer-Encoding"):
            raise Refused(411, "chunked request bodies are not accepted: send Content-Length")
        if self.headers.get("Content-Encoding", "identity").lower() != "identity":
            raise Refused(415, "compressed request bodies are not accepted")
        text = self.headers.get("Content-Length", "0")
        if not text.isdigit():
            raise Refused(400, f"bad Content-Length {text!r:.40}")
        length = self.declared = int(text)
        if length > self.server.max_request_bytes:
            raise Refused(
                413,
                f"the request body ({length} bytes) is larger than this server accepts "
                f"({self.server.max_request_bytes} bytes; ast-triton serve --max-request-mb)",
            )
        return length

    def _json_length(self, length: int) -> int:
        text = self.headers.get("Inference-Header-Content-Length")
        if text is None:
            return length  # the whole body is JSON
        if not text.isdigit() or int(text) > length:
            raise Refused(400, f"bad Inference-Header-Content-Length {text!r:.40}")
        return int(text)

    def _read(self, n: int) -> bytes:
        data = self.rfile.read(n)
        self.consumed += len(data)
        if len(data) != n:
            raise OSError(f"the client sent {len(data)} of {n} bytes")
        return data

    def _forward(self, head: bytes, rest: int) -> None:
        conn = http.client.HTTPConnection(*self.server.upstream, timeout=SERVER_TIMEOUT_S)
        try:
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for key, value in self.headers.items():
                    if key.lower() not in _HOP_BY_HOP:
                        conn.putheader(key, value)
                conn.endheaders()
                conn.send(head)
            except OSError as e:
                raise Refused(503, f"the model server is not reachable ({e}): retry later") from e
            while rest > 0:  # binary tensor data: streamed, never held whole
                block = self.rfile.read(min(rest, _CHUNK))
                self.consumed += len(block)
                if not block:
                    raise OSError("the client closed the connection mid-body")
                conn.send(block)
                rest -= len(block)
            try:
                response = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                raise Refused(502, f"the model server failed on this request ({e})") from e
            self._relay(response)
        finally:
            conn.close()

    def _relay(self, response: http.client.HTTPResponse) -> None:
        self.send_response_only(response.status, response.reason)
        length = response.getheader("Content-Length")
        for key, value in response.getheaders():
            if key.lower() not in _HOP_BY_HOP:
                self.send_header(key, value)
        if length is None:  # rare (Triton sends lengths): close to end the body
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command == "HEAD":
            return
        while block := response.read(_CHUNK):
            self.wfile.write(block)

    def _refuse(self, e: Refused, unread: int) -> None:
        logger.info("refused %s %s: %s", self.command, self.path[:80], e)
        body = json.dumps({"error": str(e)}).encode()
        # the unread body is skipped when it is not too large, so that the client gets
        # to read the answer; otherwise the connection is closed after it
        if e.status == 411 or unread > BUFFER_BUDGET_FACTOR * self.server.max_request_bytes:
            self.close_connection = True
        else:
            try:
                while unread > 0:
                    block = self.rfile.read(min(unread, _CHUNK))
                    if not block:
                        break
                    unread -= len(block)
            except OSError:
                pass
            self.close_connection = self.close_connection or unread > 0
        try:
            self.send_response(e.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            if self.close_connection:
                self._linger()
        except OSError:
            self.close_connection = True

    def _linger(self) -> None:
        """Half-close, then skip what the client still sends (bounded in time).

        Closing a socket with unread input makes the kernel reset the connection, and the
        client may then lose the answer it has not read yet (as web servers' "lingering
        close" avoids).
        """
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_WR)
        self.connection.settimeout(0.5)
        deadline = time.monotonic() + LINGER_S
        while time.monotonic() < deadline and self.connection.recv(_CHUNK):
            pass


class FrontServer(ThreadingHTTPServer):
    """The validating front: listens on ``address``, forwards to ``upstream`` (host, port)."""

    daemon_threads = True
    block_on_close = False  # stop() never waits for idle keep-alive connections
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        upstream: tuple[str, int],
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    ):
        if isinstance(max_request_bytes, bool) or not (
            isinstance(max_request_bytes, int) and max_request_bytes > 0
        ):
            raise ValueError(f"max_request_bytes must be an integer > 0, got {max_request_bytes!r}")
        self.upstream = upstream
        self.max_request_bytes = max_request_bytes
        self.budget = _Budget(BUFFER_BUDGET_FACTOR * max_request_bytes)
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection in its own thread, if one of the slots is free."""
        slots = self.slots
        if not slots.acquire(blocking=False):
            logger.warning("%d connections open: closing a new one", MAX_CONNECTIONS)
            self.shutdown_request(request)
            return

        def run() -> None:
            try:
                self.process_request_thread(request, client_address)
            finally:
                slots.release()

        try:
            threading.Thread(target=run, name="triton-front-conn", daemon=True).start()
        except BaseException:
            slots.release()
            self.shutdown_request(request)
            raise

    def start(self) -> threading.Thread:
        """Serve in a daemon thread; :meth:`stop` ends it."""
        thread = threading.Thread(
            target=self.serve_forever, args=(0.1,), name="triton-front", daemon=True
        )
        thread.start()
        return thread

    def stop(self) -> None:
        """Stop accepting and close the listening socket."""
        self.shutdown()
        self.server_close()


def free_port(host: str) -> int:
    """A TCP port on ``host`` that nothing listens on now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "DTYPE_BYTES",
    "FrontServer",
    "Refused",
    "check_infer_header",
    "free_port",
]
