"""Bad input over real sockets: `forecastflow serve`'s app on uvicorn (in a thread, with the
protocol options `serve` uses and a short request deadline) serving real champions.

Path tricks in problem names are 404s naming the name (escaped, cut) and open no file;
oversized bodies are 413 without being read whole (declared, understated or chunked);
deeply nested JSON and huge arrays are 422; bodies not declared JSON are 415; slow clients
(slowloris) neither block ordinary requests nor hold their connection past the deadline."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

import forecastflow
from forecastflow.serving import limits
from forecastflow.serving.app import create_app
from forecastflow.serving.schemas import MAX_BODY_BYTES
from tests.conftest import free_port
from tests.serving.champions import EXOG, PANEL, SINGLE, champions_hub

DEADLINE = 2.0  # seconds to receive a request (REQUEST_SECONDS in production)
PACKAGE = Path(forecastflow.__file__).parent  # its sources (tracebacks, lazy imports)
OPENED: list[list[str]] = []  # files opened while a test records (see the audit hook)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and OPENED and isinstance(args[0], (str, bytes, Path)):
        OPENED[-1].append(str(args[0]))


sys.addaudithook(_audit)  # cannot be removed: records only while OPENED holds a list


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The app on a free loopback port; yields its port and serving folder."""
    root = tmp_path_factory.mktemp("limits")
    (root / "secret.json").write_text('{"canary": "not for clients"}')  # outside serving
    hub = champions_hub(root / "serving")
    port = free_port()
    config = uvicorn.Config(create_app(hub, api_token=""), host="127.0.0.1", port=port,
                            log_level="warning", access_log=False,
                            **limits.server_options(request_seconds=DEADLINE))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield {"port": port, "folder": root / "serving"}
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def exchange(port: int, raw: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` (a whole request) and read one response: status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        return read_response(sock)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
            ) -> bytes:
    """A raw request (Content-Length from ``body`` unless ``headers`` set one)."""
    fields = {"Host": "127.0.0.1", "Content-Type": "application/json",
              "Content-Length": str(len(body)), **(headers or {})}
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in fields.items() if v is not None)
    return head.encode("latin-1") + b"\r\n" + body


def detail(body: bytes) -> str:
    """The message of an error response: the app's JSON ``detail``, or uvicorn's text."""
    return json.loads(body)["detail"] if body.startswith(b"{") else body.decode()


LONG = "a" * 5000
PATH_TRICKS = [
    ("/problems/..%2F..%2Fetc/forecast", "'../../etc'"),
    ("/problems/..%2F..%2F..%2F..%2Fetc%2Fpasswd/series", "'../../../../etc/passwd'"),
    ("/problems/..%2Fsecret.json/series", "'../secret.json'"),
    (f"/problems/{SINGLE}%2F..%2F..%2Fsecret.json/forecast", f"'{SINGLE}/../../secret.json'"),
    (f"/problems/{SINGLE}/../../secret.json/forecast", f"'{SINGLE}/../../secret.json'"),
    ("/problems/%2e%2e/forecast", "'..'"),
    ("/problems/%252e%252e%252fsecret.json/forecast", "'%2e%2e%2fsecret.json'"),
    ("/problems/..%5C..%5Csecret.json/forecast", r"'..\\..\\secret.json'"),
    ("/problems/%00/forecast", r"'\x00'"),
    (f"/problems/{SINGLE}%00.json/series", rf"'{SINGLE}\x00.json'"),
    ("/problems/x%0D%0ASet-Cookie:%20a=b/forecast", r"'x\r\nSet-Cookie: a=b'"),
    ("/problems/%E2%80%AEfdp.exe/forecast", r"'\u202efdp.exe'"),
    ("/problems/%F0%9F%93%88%C3%A9/series", "'📈é'"),
    ("/problems/%FF%FE/forecast", "'\ufffd\ufffd'"),
    ("/problems//forecast", "''"),
    (f"/problems/{LONG}/forecast", f"'{LONG[:79]}... (5002 characters)"),
]


@pytest.mark.parametrize(("path", "needle"), PATH_TRICKS, ids=lambda v: str(v)[:40])
def test_path_tricks_are_404s_naming_the_name_and_open_no_file(server, path: str,
                                                                needle: str) -> None:
    method = "POST" if path.endswith("/forecast") else "GET"
    body = b'{"horizon": 1}' if method == "POST" else b""
    OPENED.append([])
    try:
        status, headers, out = exchange(server["port"], request(method, path, body))
    finally:
        opened = OPENED.pop()
    assert status == 404 and headers["content-type"] == "application/json", out
    assert detail(out).startswith(f"unknown problem {needle}"), detail(out)
    assert "not for clients" not in out.decode() and "root:" not in out.decode()
    assert "set-cookie" not in headers
    allowed = (str(server["folder"]), sys.prefix, sys.base_prefix, str(PACKAGE))
    outside = [p for p in opened if not p.startswith(allowed)]
    assert outside == [], outside


FORECAST = f"/problems/{SINGLE}/forecast"
HUGE = 100 * MAX_BODY_BYTES


def chunked(body: bytes, size: int = 65536, end: bool = True) -> bytes:
    """``body`` in HTTP/1.1 chunks (with the final empty chunk when ``end``)."""
    parts = [b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
             for i in range(0, len(body), size)]
    return b"".join(parts) + (b"0\r\n\r\n" if end else b"")


def nested(depth: int, opening: str = "[", closing: str = "]") -> bytes:
    return (opening * depth + "1" * (opening == '{"a":') + closing * depth).encode()


PADDED = json.dumps({"horizon": 1, "pad": "x" * (2 * MAX_BODY_BYTES)}).encode()
STREAMED = {"Content-Length": None, "Transfer-Encoding": "chunked"}
SIZE_CASES = [  # (id, raw request, status, needle)
    ("declared 2 MB, sent", request("POST", FORECAST, PADDED), 413,
     f"request body is {len(PADDED)} bytes; the limit is {MAX_BODY_BYTES}"),
    ("declared 100 MB, none sent", request("POST", FORECAST, headers={
        "Content-Length": str(HUGE)}), 413, f"request body is {HUGE} bytes"),
    ("declared 100 MB, 1 MB sent", request("POST", FORECAST, PADDED[:MAX_BODY_BYTES], {
        "Content-Length": str(HUGE)}), 413, f"request body is {HUGE} bytes"),
    ("chunked 2 MB", request("POST", FORECAST, chunked(PADDED), STREAMED), 413,
     f"request body is over {MAX_BODY_BYTES} bytes"),
    ("chunked 2 MB, never ended", request("POST", FORECAST, chunked(PADDED, end=False),
                                          STREAMED), 413, "request body is over"),
    # The rest is read as the next request: uvicorn refuses it (text) and closes.
    ("understated: Content-Length 14 of 2 MB", request("POST", FORECAST, PADDED, {
        "Content-Length": "14"}), 400, "Invalid HTTP request received."),
    ("Content-Length: abc", request("POST", FORECAST, b"{}", {"Content-Length": "abc"}),
     400, "Invalid HTTP request received."),
    ("nested 10,000 lists in exog", request("POST", FORECAST, b'{"horizon": 1, "exog": '
                                            + nested(10_000) + b"}"), 422,
     "recursion limit exceeded"),
    ("nested 10,000 lists", request("POST", FORECAST, nested(10_000)), 422,
     "recursion limit exceeded"),
    ("nested 10,000 objects", request("POST", FORECAST, nested(10_000, '{"a":', "}")), 422,
     "recursion limit exceeded"),
    ("20,001 series ids", request("POST", f"/problems/{PANEL}/forecast", json.dumps(
        {"horizon": 1, "series_ids": ["a"] * 20_001}).encode()), 422,
     "series_ids: List should have at most 20000 items"),
    ("200,000 series ids", request("POST", f"/problems/{PANEL}/forecast", json.dumps(
        {"horizon": 1, "series_ids": [str(i) for i in range(200_000)]}).encode()), 413,
     "limit"),
    ("20,001 exog rows", request("POST", f"/problems/{EXOG}/forecast", json.dumps(
        {"horizon": 1, "exog": [{"price": 1}] * 20_001}).encode()), 422,
     "exog: List should have at most 20000 items"),
    ("10,000 unknown series ids", request("POST", f"/problems/{PANEL}/forecast", json.dumps(
        {"horizon": 1, "series_ids": [f"x{i}" for i in range(10_000)]}).encode()), 422,
     "series_ids: unknown series ['x0', 'x1', 'x10', 'x100', 'x1000']"),
    ("one 900 KB series id", request("POST", f"/problems/{PANEL}/forecast", json.dumps(
        {"horizon": 1, "series_ids": ["z" * 900_000]}).encode()), 422,
     "(900004 characters)"),
    ("400-digit exog value", request("POST", f"/problems/{EXOG}/forecast", json.dumps(
        {"horizon": 1, "exog": [{"price": 10 ** 400}]}).encode()), 422,
     "exog[0].price: expected a finite number, got 1000"),
    ("exog 1.16e308: forecast not finite", request("POST", f"/problems/{EXOG}/forecast",
                                                   b'{"horizon": 1, "exog": [{"price": '
                                                   b'1.1600266291373059e+308}]}'), 422,
     f"problem '{EXOG}': the champion cannot forecast from these inputs"),
    ("10,000 wrong-typed ids", request("POST", f"/problems/{PANEL}/forecast", json.dumps(
        {"horizon": 1, "series_ids": list(range(10_000))}).encode()), 422, "; and 9995 more"),
    ("empty body", request("POST", FORECAST), 422, "horizon: Field required"),
    ("invalid UTF-8", request("POST", FORECAST, b'{"horizon": 1, "series_ids": ["\xff"]}'),
     422, "Invalid JSON"),
    ("text/plain", request("POST", FORECAST, b'{"horizon": 1}', {
        "Content-Type": "text/plain"}), 415, "Content-Type: 'text/plain' is not supported"),
    ("form-urlencoded (curl -d)", request("POST", FORECAST, b'{"horizon": 1}', {
        "Content-Type": "application/x-www-form-urlencoded"}), 415, "application/json"),
    ("no Content-Type", request("POST", FORECAST, b'{"horizon": 1}', {
        "Content-Type": None}), 200, None),
    ("application/json; charset=utf-8", request("POST", FORECAST, b'{"horizon": 1}', {
        "Content-Type": "application/json; charset=utf-8"}), 200, None),
]


@pytest.mark.parametrize(("raw", "status", "needle"), [c[1:] for c in SIZE_CASES],
                         ids=[c[0] for c in SIZE_CASES])
def test_oversized_nested_and_odd_bodies(server, raw: bytes, status: int,
                                         needle: str | None) -> None:
    started = time.monotonic()
    code, headers, out = exchange(server["port"], raw)
    assert code == status, out[:500]
    assert time.monotonic() - started < DEADLINE, "answered before the request deadline"
    if needle is not None:
        assert needle in detail(out), detail(out)
        assert len(detail(out)) < 1000, "messages quote client values cut"
    if status == 413:
        assert headers["connection"] == "close"


class SlowClient(threading.Thread):
    """Sends ``first`` at once, then ``raw`` one byte per ``interval`` seconds (slowloris)
    until the server answers or closes; records the answer and when the connection closed."""

    def __init__(self, port: int, raw: bytes, first: bytes = b"", interval: float = 1.0,
                 ) -> None:
        super().__init__(daemon=True)
        self.port, self.raw, self.first, self.interval = port, raw, first, interval
        self.received = b""
        self.closed_after: float | None = None

    def run(self) -> None:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            sock.settimeout(self.interval)
            sock.sendall(self.first)
            for byte in self.raw:
                try:
                    sock.sendall(bytes([byte]))
                    self.received += sock.recv(65536)  # waits one interval for an answer
                    if self.received:
                        break
                except TimeoutError:
                    continue
                except OSError:  # reset: the server closed the connection
                    break
            sock.settimeout(30)
            try:
                while chunk := sock.recv(65536):
                    self.received += chunk
            except OSError:
                pass
        self.closed_after = time.monotonic() - started


def test_slow_clients_block_no_one_and_are_dropped_at_the_deadline(server) -> None:
    """Slowloris connections (headers or body a byte a second, or nothing at all) while
    ordinary requests are answered at once; each slow one gets 408 and is closed at the
    request deadline, and one whose answer went out before its body is closed too."""
    port, body = server["port"], b'{"horizon": 3}'
    slow = {"headers": SlowClient(port, request("POST", FORECAST, body)),
            "body": SlowClient(port, body, first=request("POST", FORECAST, body)[:-14]),
            "nothing": SlowClient(port, b""),
            "unread body": SlowClient(port, b"x" * 100, first=request("GET", "/health", headers={
                "Content-Length": "100"}))}
    for client in slow.values():
        client.start()
    time.sleep(0.3)
    for _ in range(3):
        for raw, status in [(request("GET", "/health"), 200),
                            (request("POST", FORECAST, body), 200),
                            (request("POST", f"/problems/{EXOG}/forecast", json.dumps(
                                {"horizon": 1, "exog": [{"price": 10.0}]}).encode()), 200)]:
            started = time.monotonic()
            assert exchange(port, raw, timeout=5)[0] == status
            assert time.monotonic() - started < 2.0, "an ordinary request waited"
    for client in slow.values():
        client.join(timeout=DEADLINE + 10)
    for name, client in slow.items():
        assert client.closed_after is not None, f"{name}: still open"
        assert DEADLINE - 0.5 < client.closed_after < DEADLINE + 3, (name, client.closed_after)
        first = client.received.split(b"\r\n", 1)[0]
        if name == "unread body":
            assert first == b"HTTP/1.1 200 OK" and client.received.count(b"HTTP/1.1") == 1
        else:
            assert first == b"HTTP/1.1 408 Request Timeout", (name, client.received)
            assert b"request not received within 2 s" in client.received
