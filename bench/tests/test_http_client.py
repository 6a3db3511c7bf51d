"""The client's hand-written HTTP/1.1 parser, fed awkward byte boundaries."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from bench.harness import Target
from bench.http_client import HttpConnection, Response
from bench.stats import gaps, median, percentile

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve_once(pieces: list[bytes], close: bool = False) -> tuple[Response, ...]:
    """A server that answers the first request with ``pieces``, written apart."""

    handled = asyncio.Event()

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.005)
        if not close:
            await reader.read()  # until the client hangs up
        writer.close()
        await writer.wait_closed()
        handled.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    connection = HttpConnection("127.0.0.1", port)
    response = await connection.request("GET", "/")
    connection.close()
    await handled.wait()
    server.close()
    await server.wait_closed()
    return (response,)


def run(pieces: list[bytes], close: bool = False) -> Response:
    return asyncio.run(serve_once(pieces, close))[0]


def test_chunked_split_everywhere_with_trailer() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\ntok \r\n8;ext=1\r\ntok tok \r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    pieces = [raw[i : i + 3] for i in range(0, len(raw), 3)]
    response = run(pieces)
    assert response.ok, response.error
    assert response.body == b"tok tok tok "
    assert response.chunk_sizes == [4, 8]
    assert response.first_body_at is not None and response.done_at is not None


def test_content_length_and_read_to_close() -> None:
    response = run([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", b"lo"])
    assert response.body == b"hello"
    response = run([b"HTTP/1.0 200 OK\r\n\r\nuntil ", b"close"], close=True)
    assert response.ok and response.body == b"until close"


def test_truncated_stream_is_an_error() -> None:
    response = run(
        [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ntok \r\n"],
        close=True,
    )
    assert not response.ok
    assert "closed" in (response.error or "")


def test_token_arrivals_show_batching() -> None:
    target = Target("piagent", 0, "/chat", tree=None)  # type: ignore[arg-type]
    response = Response(chunk_times=[1.0, 2.0, 3.0], chunk_sizes=[4, 8, 2])
    response.body_parts = [b"tok ", b"tok tok ", b"to"]
    assert target.token_arrivals(response) == [1.0, 2.0, 2.0]


def test_stats_helpers() -> None:
    assert median([3, 1, 2]) == 2
    assert percentile([0, 10], 99) == pytest.approx(9.9)
    assert gaps([1.0, 1.5, 3.0]) == [0.5, 1.5]
