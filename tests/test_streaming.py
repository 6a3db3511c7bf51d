"""Streaming through the real server: headers, byte-exact tokens, live arrival."""

import socket
import time

import pytest
import requests

from tests.support.fake_ollama import DEFAULT_TOKENS, Behaviour
from tests.support.faults import BEFORE_FIRST_TOKEN, assert_real_status

REPLY = "".join(DEFAULT_TOKENS)


def open_stream(server, body):
    return requests.post(
        server.url + "/chat", json={"stream": True, **body}, stream=True, timeout=10
    )


def test_stream_headers_and_byte_exact_body(server, ollama):
    response = open_stream(server, {"message": "hello"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Conversation-Id"]
    assert response.raw.read() == REPLY.encode("utf-8")


def arrival_gaps(response):
    """The chunks of a streamed response, and the seconds between arrivals."""
    arrivals = []
    chunks = []
    for chunk in response.iter_content(chunk_size=None):
        arrivals.append(time.monotonic())
        chunks.append(chunk.decode())
    gaps = [
        later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)
    ]
    return chunks, gaps


def test_each_token_leaves_as_soon_as_ollama_emits_it(server, ollama):
    tokens = [f"t{i} " for i in range(6)]
    ollama.behaviour = Behaviour(tokens=tokens, delay=0.1)
    response = open_stream(server, {"message": "count"})
    chunks, gaps = arrival_gaps(response)
    assert chunks == tokens
    # Spaced like the model's output, not delivered together at the end.
    assert min(gaps) > 0.05, gaps


def test_stream_keeps_the_conversation_id_given(server):
    response = open_stream(server, {"message": "hi", "conversation_id": "abc"})
    assert response.headers["X-Conversation-Id"] == "abc"
    response.close()


@pytest.mark.parametrize(
    ("fault", "status", "needle"),
    [*BEFORE_FIRST_TOKEN, ("status_400", 502, "invalid request")],
)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_failure_before_first_token_gets_its_real_status(
    server, ollama, fault, status, needle, stream
):
    ollama.behaviour = Behaviour(fault=fault)
    response = requests.post(
        server.url + "/chat", json={"message": "hi", "stream": stream}, timeout=10
    )
    assert_real_status(response, status, needle)


def test_missing_model_is_502_with_the_pull_command(server, ollama):
    ollama.behaviour = Behaviour(models=("other:1b",))
    for stream in (True, False):
        response = requests.post(
            server.url + "/chat", json={"message": "hi", "stream": stream}, timeout=10
        )
        assert response.status_code == 502
        assert "ollama pull qwen2.5:3b-instruct" in response.json()["detail"]


def test_unreachable_ollama_is_502_naming_the_host(start_server):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        host = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = start_server(OLLAMA_HOST=host)
    started = time.monotonic()
    response = requests.post(server.url + "/chat", json={"message": "hi"}, timeout=10)
    assert response.status_code == 502
    assert f"Ollama unreachable at {host}" in response.json()["detail"]
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("fault", "logged"),
    [
        ("error_line", "boom"),
        ("malformed_line", "malformed line"),
        ("drop", "dropped the stream"),
        ("hang_mid", "sent nothing"),
        ("no_done", "without its final line"),
    ],
)
def test_failure_after_first_token_cuts_the_stream_short(server, ollama, fault, logged):
    ollama.behaviour = Behaviour(fault=fault, fault_after=2)
    response = open_stream(server, {"message": "hi"})
    assert response.status_code == 200
    received = b""
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for chunk in response.iter_content(chunk_size=None):
            received += chunk
    expected = DEFAULT_TOKENS if fault == "no_done" else DEFAULT_TOKENS[:2]
    assert received == "".join(expected).encode()
    log = server.wait_for_log(logged)
    assert "Traceback" not in log


def test_json_reply_fails_whole_when_the_model_fails_mid_way(server, ollama):
    ollama.behaviour = Behaviour(fault="error_line")
    response = requests.post(server.url + "/chat", json={"message": "hi"}, timeout=10)
    assert response.status_code == 502
    assert "boom" in response.json()["detail"]


def test_a_malformed_line_is_reported_without_quoting_model_text(server, ollama):
    ollama.behaviour = Behaviour(fault="malformed_line", fault_after=2)
    response = open_stream(server, {"message": "hi"})
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        response.content  # noqa: B018 - read to the cut
    log = server.wait_for_log("malformed line from Ollama (")
    assert "private words" not in log  # LOG_CONTENT is off: no model text logged
