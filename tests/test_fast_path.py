"""The fenced fast path: the own chunked decoder reads real model-server bodies,
and anything it was not built for goes to urllib3 instead, logged once."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from http.client import HTTPResponse as HttplibResponse
from typing import Any

import pytest
import urllib3
from urllib3 import HTTPHeaderDict, HTTPResponse

from piagent.providers import http as provider_http
from piagent.providers.http import body_reads, fast_path
from piagent.providers.ollama import OllamaProvider
from piagent.providers.openai import OpenAIProvider
from tests.support.fake_ollama import DEFAULT_TOKENS
from tests.support.server import MODEL

MESSAGES = [{"role": "user", "content": "hi"}]


def ollama_provider(url: str) -> OllamaProvider:
    return OllamaProvider(
        url, timeout=5, connect_timeout=1, keep_alive="5m", options={}
    )


def openai_provider(url: str) -> OpenAIProvider:
    return OpenAIProvider(
        url + "/v1",
        api_key="",
        timeout=5,
        connect_timeout=1,
        temperature=0.7,
        max_tokens=200,
    )


@pytest.fixture
def no_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any body it reads goes through urllib3's own stream().

    Only this test's thread: a start-up probe left running by an app of an
    earlier test reads its model list through stream() too, and must not
    fail (or be failed by) this test.
    """
    original = urllib3.HTTPResponse.stream
    test_thread = threading.get_ident()

    def fallback(self: HTTPResponse, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        if threading.get_ident() != test_thread:
            return original(self, *args, **kwargs)
        raise AssertionError("the fast path fell back to urllib3's raw.stream()")

    monkeypatch.setattr(urllib3.HTTPResponse, "stream", fallback)


def test_the_fast_path_is_in_use_with_ollama(ollama, no_fallback):
    reply = ollama_provider(ollama.url).complete(MODEL, MESSAGES)
    assert reply.text == "".join(DEFAULT_TOKENS)


def test_the_fast_path_is_in_use_with_an_openai_compatible_server(
    fake_openai, no_fallback
):
    reply = openai_provider(fake_openai.url).complete(MODEL, MESSAGES)
    assert reply.text == "".join(DEFAULT_TOKENS)


@pytest.fixture
def respond() -> Iterator[Callable[..., HTTPResponse]]:
    """urllib3 responses over real http.client responses read from a socket
    pair, as requests' adapter builds them (nothing preloaded or decoded)."""
    opened: list[tuple[socket.socket, HTTPResponse]] = []

    def respond(head: bytes, body: bytes = b"") -> HTTPResponse:
        ours, theirs = socket.socketpair()
        with theirs:
            theirs.sendall(head + b"\r\n" + body)
        httplib = HttplibResponse(ours, method="POST")
        httplib.begin()
        raw = HTTPResponse(
            body=httplib,
            headers=HTTPHeaderDict(httplib.msg.items()),
            status=httplib.status,
            preload_content=False,
            decode_content=False,
            original_response=httplib,
        )
        opened.append((ours, raw))
        return raw

    yield respond
    for sock, raw in opened:
        raw.close()
        sock.close()


CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
BODY = b"3\r\nabc\r\n0\r\n\r\n"


def test_a_plain_chunked_body_takes_the_fast_path(respond):
    raw = respond(CHUNKED, BODY)
    assert fast_path(raw) is not None
    assert b"".join(body_reads(raw)) == b"abc"


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n", "not chunked"),
        (CHUNKED + b"Content-Encoding: gzip\r\n", "Content-Encoding gzip"),
    ],
    ids=["content-length", "gzip"],
)
def test_what_the_decoder_was_not_built_for_goes_to_urllib3_logged_once(
    monkeypatch, caplog, respond, head, reason
):
    monkeypatch.setattr(provider_http, "_fell_back", False)
    with caplog.at_level("DEBUG", logger="piagent"):
        assert fast_path(respond(head, BODY)) is None
        assert fast_path(respond(head, BODY)) is None
    [record] = caplog.records
    assert reason in record.getMessage()


def test_a_body_urllib3_has_started_reading_stays_with_urllib3(
    monkeypatch, caplog, respond
):
    monkeypatch.setattr(provider_http, "_fell_back", False)
    raw = respond(CHUNKED, BODY)
    assert raw.read(1) == b"a"
    with caplog.at_level("DEBUG", logger="piagent"):
        assert fast_path(raw) is None
    assert "urllib3 has read part of the body" in caplog.text
