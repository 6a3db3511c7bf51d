"""The straightforward proxy answers like piagent, so the two compare per token.

Why: the reference figure divides piagent's CPU by this app's. That only means
something if the app relays every token the fake sends, in the shapes piagent
uses (a JSON ``reply``, or the plain text of the tokens). No timings here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from bench.figures_reference import ReferenceProcess, reference_target
from bench.harness import Target
from bench.http_client import Response, one_request
from bench.processes import (
    PROJECT_ROOT,
    FakeOllamaProcess,
    GunicornProcess,
    http_get,
    make_log_dir,
)


@pytest.fixture(scope="module")
def server() -> Iterator[GunicornProcess]:
    log_dir = make_log_dir()
    fake = FakeOllamaProcess(log_dir, "bench-model")
    fake.start()
    reference = ReferenceProcess(PROJECT_ROOT, log_dir, fake.url)
    try:
        reference.start()
        reference.wait_healthy()
        yield reference
    finally:
        reference.stop()
        fake.stop()


def chat(server: GunicornProcess, body: dict) -> Response:
    data = json.dumps(body).encode()
    return asyncio.run(one_request("127.0.0.1", server.port, "POST", "/chat", data))


def test_health(server: GunicornProcess) -> None:
    assert http_get(server.port, "/health") == (200, b'{"status":"ok"}\n')


def test_non_stream_reply_is_every_token(server: GunicornProcess) -> None:
    response = chat(server, {"message": "bench tokens=20", "stream": False})
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"reply": "tok " * 20}
    assert reference_target(server).tokens_in(response) == 20


@pytest.mark.parametrize("tokens", [1, 50, 5000])
def test_stream_is_the_tokens_as_text(server: GunicornProcess, tokens: int) -> None:
    response = chat(server, {"message": f"bench tokens={tokens}", "stream": True})
    assert response.status == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.body == b"tok " * tokens
    assert reference_target(server).tokens_in(response) == tokens


def test_counts_tokens_as_piagent_target_does(server: GunicornProcess) -> None:
    """The figure sends the reference piagent's own request bodies."""
    target = reference_target(server)
    piagent = Target("piagent", server.port, "/chat", target.tree)
    assert target.body("bench tokens=3", stream=False) == piagent.body(
        "bench tokens=3", stream=False
    )
    response = chat(server, {"message": "bench tokens=7", "stream": True})
    assert target.tokens_in(response) == piagent.tokens_in(response) == 7


def test_missing_message_is_400(server: GunicornProcess) -> None:
    response = chat(server, {"stream": True})
    assert response.status == 400
    assert response.json() == {"error": "message is required"}


def test_runs_as_master_and_one_worker(server: GunicornProcess) -> None:
    assert len(server.tree().processes()) == 2
