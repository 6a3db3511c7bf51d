"""A small asyncio HTTP/1.1 client that times every chunk it receives.

Why not requests/aiohttp: the stream figures need the arrival time of each chunk
and of the first body byte, 1,000 connections at once from one process, and a
client cheap enough that it is never what is being measured. So it reads raw
bytes from asyncio streams (one ``read()`` per arrival, the whole buffer parsed
by hand) and stamps each chunk with the ``time.monotonic()`` of the read that
completed it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Response:
    """One request's outcome; times are ``time.monotonic()`` seconds."""

    started: float = 0.0  # before connecting (or sending, on a reused connection)
    sent: float = 0.0  # request written
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    head_at: float | None = None  # status line and headers complete
    first_body_at: float | None = None  # first non-empty body bytes
    chunk_times: list[float] = field(default_factory=list)
    chunk_sizes: list[int] = field(default_factory=list)
    body_parts: list[bytes] = field(default_factory=list)
    done_at: float | None = None
    closed_at: float | None = None  # when we hung up early (stop_after_chunks)
    error: str | None = None

    @property
    def body(self) -> bytes:
        return b"".join(self.body_parts)

    @property
    def ttfb(self) -> float | None:
        """First body byte, counted from ``started`` (includes connecting)."""
        return None if self.first_body_at is None else self.first_body_at - self.started

    @property
    def ok(self) -> bool:
        return self.error is None and 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body)


class HttpError(Exception):
    """The peer broke HTTP/1.1 framing or hung up mid-response."""


class _ResponseReader(asyncio.Protocol):
    """Parses responses straight from ``data_received``, no task switch per read.

    Why a Protocol under the streams API: with ``StreamReader`` every arrival
    costs a future, a task step and a few coroutine frames (~30 µs here), which
    at 1,000 streams x 20 tokens/s would make the client a rival of the server
    for the CPU. Parsing in the callback costs a few µs per chunk.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.closed = False
        self.response: Response | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.state = "idle"  # head | size | data | trailer | length | eof | idle
        self.remaining = 0
        self.stop_after: int | None = None
        self.keep_body = True

    # --- asyncio callbacks ---
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.response is not None:
            self._parse(time.monotonic())

    def eof_received(self) -> bool:
        self._peer_closed(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._peer_closed(exc)

    # --- one response ---
    def begin(
        self, response: Response, stop_after: int | None, keep_body: bool
    ) -> asyncio.Future[None]:
        self.response = response
        self.state = "head"
        self.stop_after = stop_after
        self.keep_body = keep_body
        self.waiter = asyncio.get_running_loop().create_future()
        if self.buf:
            self._parse(time.monotonic())
        return self.waiter

    def _finish(self, error: str | None = None) -> None:
        response = self.response
        if response is None:
            return
        self.response = None
        self.state = "idle"
        if error is None:
            response.done_at = time.monotonic()
        else:
            response.error = error
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _peer_closed(self, exc: Exception | None) -> None:
        response = self.response
        if response is None:
            return
        if self.state == "eof":
            self._note(response, bytes(self.buf), time.monotonic())
            self.buf.clear()
            self._finish()
        else:
            reason = f": {exc}" if exc else ""
            self._finish(f"HttpError: connection closed by peer{reason}")

    def _note(self, response: Response, data: bytes, at: float) -> None:
        if not data:
            return
        if response.first_body_at is None:
            response.first_body_at = at
        response.chunk_times.append(at)
        response.chunk_sizes.append(len(data))
        if self.keep_body:
            response.body_parts.append(data)

    def _parse(self, now: float) -> None:
        try:
            self._parse_buffer(now)
        except (ValueError, IndexError, HttpError) as exc:
            self._finish(f"{type(exc).__name__}: {exc}")
            if self.transport is not None:
                self.transport.close()

    def _parse_buffer(self, now: float) -> None:
        buf = self.buf
        pos = 0
        while (response := self.response) is not None:
            state = self.state
            if state == "data":
                if len(buf) - pos < self.remaining + 2:
                    break
                end = pos + self.remaining
                self._note(response, bytes(buf[pos:end]), now)
                pos = end + 2
                self.state = "size"
                if self.stop_after and len(response.chunk_times) >= self.stop_after:
                    response.closed_at = time.monotonic()
                    assert self.transport is not None
                    self.transport.close()  # FIN, like a closed browser tab
                    self._finish()
            elif state == "size":
                line_end = buf.find(b"\r\n", pos)
                if line_end < 0:
                    break
                size = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
                pos = line_end + 2
                self.state, self.remaining = ("data", size) if size else ("trailer", 0)
            elif state == "head":
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    break
                self._head(response, bytes(buf[pos:end]), now)
                pos = end + 4
            elif state == "trailer":  # optional trailers, then an empty line
                line_end = buf.find(b"\r\n", pos)
                if line_end < 0:
                    break
                empty = line_end == pos
                pos = line_end + 2
                if empty:
                    self._done_keepalive(response)
            elif state == "length":
                if len(buf) - pos < self.remaining:
                    break
                end = pos + self.remaining
                self._note(response, bytes(buf[pos:end]), now)
                pos = end
                self._done_keepalive(response)
            else:  # "eof": the body is whatever arrives until the peer closes
                break
        del buf[:pos]

    def _head(self, response: Response, head: bytes, now: float) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise HttpError(f"bad status line {lines[0]!r}")
        response.status = int(parts[1])
        response.head_at = now
        headers = response.headers
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.state = "size"
        elif "content-length" in headers:
            self.state, self.remaining = "length", int(headers["content-length"])
        else:
            self.state = "eof"

    def _done_keepalive(self, response: Response) -> None:
        close = response.headers.get("connection", "").lower() == "close"
        self._finish()
        if close and self.transport is not None:
            self.transport.close()


class HttpConnection:
    """One keep-alive connection; reconnects if the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: _ResponseReader | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        _, self._reader = await loop.create_connection(
            _ResponseReader, self.host, self.port
        )

    def close(self) -> None:
        """Hang up now (FIN), without waiting: what a browser tab closing does."""
        if self._reader is not None and self._reader.transport is not None:
            self._reader.transport.close()
        self._reader = None

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        content_type: str = "application/json",
        stop_after_chunks: int | None = None,
        keep_body: bool = True,
    ) -> Response:
        """Send one request and read the response, recording its timing.

        With ``stop_after_chunks`` the connection is closed as soon as that many
        non-empty body chunks arrived (``closed_at`` says when).
        """
        response = Response(started=time.monotonic())
        try:
            reader = self._reader
            if reader is None or reader.closed or reader.transport.is_closing():  # type: ignore[union-attr]
                await self.open()
                reader = self._reader
            assert reader is not None and reader.transport is not None
            head = (
                f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                "Connection: keep-alive\r\n"
            )
            if body is not None:
                head += (
                    f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                )
            done = reader.begin(response, stop_after_chunks, keep_body)
            reader.transport.write(head.encode() + b"\r\n" + (body or b""))
            response.sent = time.monotonic()
            await done
        except OSError as exc:
            response.error = f"{type(exc).__name__}: {exc}"
        if response.error is not None:
            self.close()
        return response


async def one_request(
    host: str,
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    stop_after_chunks: int | None = None,
    keep_body: bool = True,
) -> Response:
    """A request on its own fresh connection, closed afterwards."""
    connection = HttpConnection(host, port)
    try:
        return await connection.request(
            method, path, body, stop_after_chunks=stop_after_chunks, keep_body=keep_body
        )
    finally:
        connection.close()


async def simultaneous(
    host: str,
    port: int,
    path: str,
    body: bytes,
    count: int,
    *,
    timeout: float,
    keep_body: bool = True,
) -> tuple[float, list[Response]]:
    """``count`` requests started at once, each on its own connection.

    Returns the launch time and the responses; one that has not finished within
    ``timeout`` seconds comes back with an error.
    """
    launched = time.monotonic()

    async def one() -> Response:
        try:
            return await asyncio.wait_for(
                one_request(host, port, "POST", path, body, keep_body=keep_body),
                timeout,
            )
        except TimeoutError:
            return Response(started=launched, error=f"timeout after {timeout:g} s")

    responses = await asyncio.gather(*(one() for _ in range(count)))
    return launched, list(responses)


async def sequential_on(
    connection: HttpConnection,
    path: str,
    bodies: Sequence[bytes],
    keep_body: bool = True,
) -> list[Response]:
    """The bodies one after another on one keep-alive connection."""
    return [
        await connection.request("POST", path, body, keep_body=keep_body)
        for body in bodies
    ]


async def closed_loop(
    host: str, port: int, path: str, body: bytes, total: int, concurrency: int
) -> list[Response]:
    """``total`` requests from ``concurrency`` keep-alive clients, each sending
    its next request when the previous answer is complete (like wrk, but counted).
    """
    remaining = total
    results: list[Response] = []

    async def client() -> None:
        nonlocal remaining
        connection = HttpConnection(host, port)
        while remaining > 0:
            remaining -= 1
            results.append(await connection.request("POST", path, body))
        connection.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return results
