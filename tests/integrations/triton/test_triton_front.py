"""The validating HTTP front of ``ast-triton serve``, against a recording stand-in server.

Requests are built by tritonclient's own HTTP client (``generate_request_body``), then
made to lie with its ``set_shape``: the front must refuse what declares other sizes than
it carries, forward the rest byte for byte, and never let a refused request reach the
server. The real server behind it: ``test_triton_server.py``.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from ast_onnx.triton.front import FrontServer, free_port

httpclient = pytest.importorskip("tritonclient.http", reason="needs tritonclient[http]")

HOST = "127.0.0.1"
MAX_BYTES = 1 << 20
INFER = "/v2/models/demo/infer"


class Recorder(BaseHTTPRequestHandler):
    """Answers every request with 200 and what it received; keeps each request."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._answer()

    do_POST = do_GET

    def _answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.seen.append((self.command, self.path, dict(self.headers), body))
        out = json.dumps({"received": len(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


@pytest.fixture
def servers():
    upstream = ThreadingHTTPServer((HOST, 0), Recorder)
    upstream.seen = []
    threading.Thread(target=upstream.serve_forever, args=(0.1,), daemon=True).start()
    front = FrontServer((HOST, free_port(HOST)), upstream.server_address, MAX_BYTES)
    front.start()
    yield front, upstream
    front.stop()
    upstream.shutdown()
    upstream.server_close()


def send(front, body: bytes, headers: dict, path: str = INFER, conn=None):
    conn = conn or http.client.HTTPConnection(*front.server_address, timeout=30)
    conn.request("POST", path, body=body, headers={"Content-Length": str(len(body)), **headers})
    response = conn.getresponse()
    return response.status, json.loads(response.read()), conn


def binary_request(array: np.ndarray, dtype: str = "FP32", shape=None, binary=True):
    inp = httpclient.InferInput("waveform", list(array.shape), dtype)
    inp.set_data_from_numpy(array, binary_data=binary)
    if shape is not None:
        inp.set_shape(shape)  # the lie: declared shape != data sent
    body, json_size = httpclient.InferenceServerClient.generate_request_body([inp])
    headers = {} if json_size is None else {"Inference-Header-Content-Length": str(json_size)}
    return body, headers


WAVE = np.zeros((1, 16000), np.float32)

LIES = {
    "binary [1, 10^12]": (WAVE, [1, 10**12], True, "declares shape.*4000000000000 bytes.*64000"),
    "binary [10^9, 1]": (WAVE[:, :10], [10**9, 1], True, "4000000000 bytes.*carries 40 bytes"),
    "JSON [10^9, 1]": (WAVE[:, :10], [10**9, 1], False, "1000000000 elements.*carries 10"),
    "negative dim": (WAVE, [-1, 16000], True, "integers >= 0"),
    "fewer than sent": (WAVE, [1, 100], True, "400 bytes.*carries 64000"),
}


@pytest.mark.parametrize("case", sorted(LIES))
def test_a_shape_lie_is_refused_before_the_server(servers, case):
    front, upstream = servers
    array, shape, binary, match = LIES[case]
    body, headers = binary_request(array, shape=shape, binary=binary)
    status, answer, conn = send(front, body, headers)
    assert status == 400
    assert "waveform" in answer["error"]
    assert re.search(match, answer["error"]), answer["error"]
    assert upstream.seen == []
    # the same connection goes on: a good request is forwarded on it
    good, good_headers = binary_request(WAVE)
    status, answer, _ = send(front, good, good_headers, conn=conn)
    assert status == 200 and answer == {"received": len(good)}
    conn.close()


@pytest.mark.parametrize("binary", [True, False])
def test_a_good_request_is_forwarded_byte_for_byte(servers, binary):
    front, upstream = servers
    wave = np.random.default_rng(0).standard_normal((2, 3000)).astype(np.float32)
    body, headers = binary_request(wave, binary=binary)
    status, answer, conn = send(front, body, headers)
    conn.close()
    assert status == 200 and answer == {"received": len(body)}
    ((method, path, seen_headers, seen_body),) = upstream.seen
    assert (method, path, seen_body) == ("POST", INFER, body)
    for key, value in headers.items():
        assert seen_headers[key] == value


def test_a_body_over_the_limit_gets_413_and_never_reaches_the_server(servers):
    front, upstream = servers
    body, headers = binary_request(np.zeros((1, MAX_BYTES // 4 + 1), np.float32))
    status, answer, conn = send(front, body, headers)
    conn.close()
    assert status == 413 and f"({MAX_BYTES} bytes" in answer["error"]
    assert upstream.seen == []


def test_binary_sizes_must_add_up_to_the_body(servers):
    front, upstream = servers
    body, headers = binary_request(WAVE)
    status, answer, conn = send(front, body + b"\0" * 8, headers)  # 8 stray bytes
    conn.close()
    assert status == 400 and "add up to 64000 bytes" in answer["error"]
    assert upstream.seen == []


@pytest.mark.parametrize(
    ("headers", "status"),
    [({"Content-Encoding": "gzip"}, 415), ({"Inference-Header-Content-Length": "x"}, 400)],
)
def test_bodies_the_front_cannot_check_are_refused(servers, headers, status):
    front, upstream = servers
    body, _ = binary_request(WAVE)
    got, answer, conn = send(front, body, headers)
    conn.close()
    assert got == status and answer["error"]
    assert upstream.seen == []


def test_chunked_bodies_are_refused(servers):
    front, upstream = servers
    chunk = b'{"inputs": []}'
    request = (
        (
            f"POST {INFER} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            f"{len(chunk):x}\r\n"
        ).encode()
        + chunk
        + b"\r\n0\r\n\r\n"
    )
    with socket.create_connection(front.server_address, timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while block := sock.recv(65536):
            answer += block
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 411")
    assert "Content-Length" in json.loads(body)["error"]
    assert upstream.seen == []


def test_other_requests_pass_through(servers):
    front, upstream = servers
    conn = http.client.HTTPConnection(*front.server_address, timeout=30)
    conn.request("GET", "/v2/health/ready")
    response = conn.getresponse()
    assert response.status == 200 and json.loads(response.read()) == {"received": 0}
    conn.close()
    assert [(m, p) for m, p, _, _ in upstream.seen] == [("GET", "/v2/health/ready")]


def test_a_server_that_is_down_gets_503(servers):
    front, upstream = servers
    upstream.shutdown()
    upstream.server_close()
    body, headers = binary_request(WAVE)
    status, answer, conn = send(front, body, headers)
    conn.close()
    assert status == 503 and "not reachable" in answer["error"]


def test_connections_past_the_limit_are_closed_and_slots_come_back(servers, monkeypatch):
    front, _ = servers
    monkeypatch.setattr(front, "slots", threading.BoundedSemaphore(1))
    held = socket.create_connection(front.server_address, timeout=30)  # takes the slot
    held.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
    held.recv(65536)  # answered: its thread now waits for the next request
    with socket.create_connection(front.server_address, timeout=30) as extra:
        extra.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        assert extra.recv(65536) == b""  # closed unanswered
    held.close()  # its slot is released when its thread ends
    for _ in range(100):
        conn = http.client.HTTPConnection(*front.server_address, timeout=30)
        try:
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                break
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.05)
    else:
        pytest.fail("the slot of a closed connection never came back")


class Dropper(Recorder):
    """Reads the request, then closes without an answer (a server that crashed on it)."""

    def _answer(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.close_connection = True


def test_a_server_failing_mid_request_gets_502_at_once():
    upstream = ThreadingHTTPServer((HOST, 0), Dropper)
    threading.Thread(target=upstream.serve_forever, args=(0.1,), daemon=True).start()
    front = FrontServer((HOST, free_port(HOST)), upstream.server_address, MAX_BYTES)
    front.start()
    try:
        body, headers = binary_request(WAVE)
        start = time.monotonic()
        status, answer, conn = send(front, body, headers)
        conn.close()
        assert status == 502 and "failed on this request" in answer["error"]
        assert time.monotonic() - start < 10  # the consumed body is not waited for again
    finally:
        front.stop()
        upstream.shutdown()
        upstream.server_close()
