"""Limits on what a client may send ``forecastflow serve``, and for how long.

* Size: a forecast body is at most ``MAX_BODY_BYTES``. A declared larger one is refused (413)
  before it is read; a chunked or understated one is read only up to the limit.
* Type: a body declared as anything but JSON is refused (415); no ``Content-Type`` is read as
  JSON.
* Time: uvicorn drops idle keep-alive connections but puts no limit on receiving a request,
  so a client sending a byte a second (slowloris) would hold its connection for good. With
  :func:`server_options`, a request (headers and body) must arrive within ``REQUEST_SECONDS``
  of its first byte (or of the connection opening): else the server answers 408 when it can
  and closes the connection. Slow clients never block others (each waits on the event loop).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from forecastflow.serving.schemas import MAX_BODY_BYTES, RequestError

DRAIN_BYTES = 16 * MAX_BODY_BYTES  # larger declared bodies are refused without reading them
DRAIN_SECONDS = 1.0
REQUEST_SECONDS = 30.0


def declared_length(request: Request) -> int | None:
    """The body size the client declared (None without a Content-Length)."""
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.strip().isdigit():  # servers refuse it first; in-process clients may not
        raise RequestError(400, f"Content-Length: {value[:40]!r} is not a byte count")
    return int(value)


def check_json(request: Request) -> None:
    """415 unless the body is declared JSON (``application/json``, ``*/*+json``) or untyped."""
    declared = request.headers.get("content-type")
    if declared is None:
        return
    media = declared.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/")
                                            and media.endswith("+json")):
        raise RequestError(415, f"Content-Type: {declared[:80]!r} is not supported; send the "
                           "body as JSON with Content-Type: application/json")


async def read_body(request: Request) -> bytes:
    """The request body, at most ``MAX_BODY_BYTES`` (413 beyond, naming the size)."""
    length = declared_length(request)
    stream = request.stream()
    if length is not None and length > MAX_BODY_BYTES:
        if length <= DRAIN_BYTES:
            await _drain(stream)  # so that the client reads the 413 (see _drain)
        raise RequestError(413, f"request body is {length} bytes; the limit is "
                           f"{MAX_BODY_BYTES}")
    chunks, size = [], 0
    try:
        async for chunk in stream:
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                await _drain(stream, size)
                raise RequestError(413, f"request body is over {MAX_BODY_BYTES} bytes (the "
                                   "limit); nothing was kept past it")
            chunks.append(chunk)
    except ClientDisconnect:
        raise RequestError(400, "the client closed the connection before sending its whole "
                           "body (or took too long)") from None
    return b"".join(chunks)


async def _drain(stream: AsyncIterator[bytes], read: int = 0) -> None:
    """Read and drop the rest of an oversized body, up to ``DRAIN_BYTES`` or for at most
    ``DRAIN_SECONDS``: closing a socket with unread data resets it, and a client still
    sending would never see the 413 (the connection is closed after it)."""
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            async for chunk in stream:
                read += len(chunk)
                if read > DRAIN_BYTES:
                    return
    except (ClientDisconnect, TimeoutError):
        return


class TimedHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol (httptools or h11) with a deadline on receiving each request."""

    request_seconds: float = REQUEST_SECONDS
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None:
            self._arm()  # a request starts
        super().data_received(data)  # parses synchronously: the cycle is up to date
        if self._received() and self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._deadline = asyncio.get_running_loop().call_later(self.request_seconds,
                                                               self._expire)

    def _received(self) -> bool:
        """The current request's headers and body are all in (the app is answering)."""
        cycle = self.cycle
        return cycle is not None and not cycle.response_complete and not cycle.more_body

    def _expire(self) -> None:
        self._deadline = None
        if self._received() or self.transport.is_closing():
            return
        cycle = self.cycle
        # 408 unless this request was answered already (its unread body still coming)
        if cycle is None or not cycle.response_started or not cycle.more_body:
            body = json.dumps({"detail": f"request not received within "
                               f"{self.request_seconds:g} s; connection closed"}).encode()
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: "
                                 b"application/json\r\nconnection: close\r\ncontent-length: "
                                 + str(len(body)).encode() + b"\r\n\r\n" + body)
        self.transport.close()


def server_options(request_seconds: float = REQUEST_SECONDS) -> dict[str, Any]:
    """``uvicorn.Config`` keywords enforcing the request deadline."""
    protocol = type("TimedHTTPProtocol", (TimedHTTPProtocol,),
                    {"request_seconds": request_seconds})
    return {"http": protocol}
