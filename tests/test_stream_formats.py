"""/chat streams as SSE and NDJSON through the real server, and usage in JSON."""

import json
import socket
import time

import pytest
import requests

from tests.support.fake_ollama import DEFAULT_TOKENS, Behaviour
from tests.support.server import MODEL

REPLY = "".join(DEFAULT_TOKENS)
SSE = "text/event-stream"
NDJSON = "application/x-ndjson"
# A short prime window and quick pings, so "the model is still reading" is
# a first token delayed by a second.
PINGING = {"STREAM_PRIME_SECONDS": "0.3", "STREAM_PING_SECONDS": "0.2"}
# A reply the fake sends in one write, so piagent reads it all at once.
BURST = [f"w{i} " for i in range(40)]


def open_stream(server, accept, body=None, **kwargs):
    return requests.post(
        server.url + "/chat",
        json={"message": "hello", "stream": True, **(body or {})},
        headers={"Accept": accept},
        stream=True,
        timeout=10,
        **kwargs,
    )


def sse_events(text):
    """(event name, data) per SSE event; comments are ("ping", None)."""
    events = []
    for block in text.split("\n\n"):
        if not block:
            continue
        if block.startswith(":"):
            events.append(("ping", None))
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def ndjson_events(text):
    events = []
    for line in text.splitlines():
        item = json.loads(line)
        name = item.pop("event")
        events.append((name, item or None))
    return events


PARSE = {SSE: sse_events, NDJSON: ndjson_events}


def read_events(response, accept):
    return PARSE[accept](response.content.decode())


def tokens_of(events):
    return "".join(data["text"] for name, data in events if name == "token")


@pytest.mark.parametrize("accept", [SSE, NDJSON])
def test_stream_events_carry_tokens_then_done_with_usage(server, ollama, accept):
    response = open_stream(server, accept, {"conversation_id": "fmt"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(accept)
    assert response.headers["X-Accel-Buffering"] == "no"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Conversation-Id"] == "fmt"
    events = read_events(response, accept)
    assert [data["text"] for _, data in events[:-1]] == list(DEFAULT_TOKENS)
    name, done = events[-1]
    assert name == "done"
    assert (done["conversation_id"], done["model"], done["provider"]) == (
        "fmt",
        MODEL,
        "ollama",
    )
    usage = done["usage"]
    assert usage["reply_tokens"] == len(DEFAULT_TOKENS)
    assert usage["prompt_tokens"] > 0
    assert usage["cached_prompt_tokens"] == ollama.evaluations[-1].cached
    assert usage["ttft_s"] >= 0
    assert usage["tokens_per_s"] > 0


def test_plain_text_stays_the_default_for_any_other_accept(server, ollama):
    for accept in ("*/*", "application/json", "text/plain", "text/html"):
        response = open_stream(server, accept)
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert response.content == REPLY.encode()


def test_sse_tokens_arrive_as_the_model_emits_them(server, ollama):
    tokens = [f"t{i} " for i in range(6)]
    ollama.behaviour = Behaviour(tokens=tokens, delay=0.1)
    response = open_stream(server, SSE)
    arrivals = []
    for _ in response.iter_content(chunk_size=None):
        arrivals.append(time.monotonic())
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:-1], strict=False)]
    assert len(arrivals) >= len(tokens)
    assert min(gaps) > 0.05, gaps


@pytest.mark.parametrize(
    ("fault", "status", "needle"),
    [("status_500", 502, "llama runner"), ("hang", 504, "OLLAMA_TIMEOUT")],
)
@pytest.mark.parametrize("accept", [SSE, NDJSON])
def test_failure_within_the_prime_window_gets_its_real_status(
    server, ollama, accept, fault, status, needle
):
    ollama.behaviour = Behaviour(fault=fault)
    response = open_stream(server, accept)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert needle in response.json()["detail"]


@pytest.mark.parametrize("accept", [SSE, NDJSON])
def test_a_slow_first_token_is_preceded_by_pings(start_server, ollama, accept):
    server = start_server(**PINGING)
    ollama.behaviour = Behaviour(first_delay=1.0)
    response = open_stream(server, accept)
    assert response.status_code == 200
    events = read_events(response, accept)
    first_token = next(i for i, (name, _) in enumerate(events) if name == "token")
    assert first_token >= 3
    assert all(name == "ping" for name, _ in events[:first_token])
    assert tokens_of(events) == REPLY
    assert events[-1][0] == "done"


def test_the_200_and_a_ping_are_sent_before_the_model_sent_anything(
    start_server, ollama
):
    server = start_server(**PINGING)
    ollama.behaviour = Behaviour(first_delay=30.0)
    # Would time out (10 s) waiting for the head if piagent held it for a token.
    response = open_stream(server, SSE)
    assert response.status_code == 200
    assert next(response.iter_content(chunk_size=None)) == b": ping\n\n"
    response.close()
    disconnect = ollama.wait_for_disconnect(timeout=3)
    assert disconnect is not None and disconnect.sent == 0


@pytest.mark.parametrize(
    ("behaviour", "status", "needle"),
    [
        (dict(first_delay=0.8, fault="status_500"), 502, "llama runner"),
        (dict(fault="hang"), 504, "OLLAMA_TIMEOUT"),
    ],
)
@pytest.mark.parametrize("accept", [SSE, NDJSON])
def test_failure_after_the_prime_window_is_an_error_event(
    start_server, ollama, accept, behaviour, status, needle
):
    server = start_server(**PINGING)
    ollama.behaviour = Behaviour(**behaviour)
    response = open_stream(server, accept, {"conversation_id": "late"})
    assert response.status_code == 200
    events = read_events(response, accept)  # ends properly: no transfer error
    name, error = events[-1]
    assert name == "error"
    assert error["status"] == status and needle in error["detail"]
    assert all(name == "ping" for name, _ in events[:-1])
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("accept", [SSE, NDJSON])
@pytest.mark.parametrize(
    "behaviour",
    [
        Behaviour(fault="error_line", fault_after=3),
        # Text that arrived in the same read as the failure still counts.
        Behaviour(tokens=BURST, burst=True, fault="error_line", fault_after=30),
    ],
    ids=["token-by-token", "all-at-once"],
)
def test_failure_mid_stream_is_an_error_event_and_the_part_is_kept(
    server, ollama, accept, behaviour
):
    ollama.behaviour = behaviour
    part = "".join(behaviour.tokens[: behaviour.fault_after])
    cid = f"mid-{accept[-6:]}-{behaviour.burst}"
    response = open_stream(server, accept, {"conversation_id": cid})
    events = read_events(response, accept)
    assert tokens_of(events) == part
    name, error = events[-1]
    assert name == "error" and error["status"] == 502 and "boom" in error["detail"]
    ollama.behaviour = Behaviour()
    requests.post(
        server.url + "/chat",
        json={"message": "again", "conversation_id": cid},
        timeout=10,
    )
    kept = ollama.requests[-1]["messages"][2]
    assert kept == {"role": "assistant", "content": part}


def test_a_client_leaving_during_pings_closes_the_upstream(start_server, ollama):
    server = start_server(**PINGING)
    ollama.behaviour = Behaviour(first_delay=10.0)
    body = json.dumps({"message": "slow", "stream": True, "conversation_id": "gone"})
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(
        b"POST /chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Accept: text/event-stream\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
    )
    received = b""
    while b": ping" not in received:
        received += sock.recv(4096)
    assert received.startswith(b"HTTP/1.1 200")
    sock.close()
    disconnect = ollama.wait_for_disconnect(timeout=3)
    assert disconnect is not None, "upstream never closed"
    assert disconnect.sent == 0
    log = server.wait_for_log("client left conversation gone after 0 chars")
    assert "Traceback" not in log


def test_json_reply_has_usage_from_the_model_servers_counts(server, ollama):
    response = requests.post(
        server.url + "/chat", json={"message": "hello"}, timeout=10
    )
    usage = response.json()["usage"]
    assert list(usage) == [
        "prompt_tokens",
        "cached_prompt_tokens",
        "reply_tokens",
        "ttft_s",
        "tokens_per_s",
    ]
    assert usage["reply_tokens"] == len(DEFAULT_TOKENS)
    [cost] = ollama.evaluations
    assert (usage["prompt_tokens"], usage["cached_prompt_tokens"]) == (
        cost.total,
        cost.cached,
    )
    assert usage["ttft_s"] >= 0


def test_deadline_while_pinging_is_an_error_event_and_frees_the_slot(
    start_server, ollama
):
    server = start_server(
        MAX_CONCURRENT_GENERATIONS="1",
        MAX_QUEUED_GENERATIONS="0",
        MAX_GENERATION_SECONDS="1",
        OLLAMA_TIMEOUT="5",
        **PINGING,
    )
    ollama.behaviour = Behaviour(first_delay=3.0)
    response = open_stream(server, SSE)
    assert response.status_code == 200
    name, error = read_events(response, SSE)[-1]
    assert name == "error"
    assert error["status"] == 504 and "MAX_GENERATION_SECONDS" in error["detail"]
    assert ollama.wait_for_disconnect(timeout=3) is not None
    ollama.behaviour = Behaviour()
    again = requests.post(server.url + "/chat", json={"message": "next"}, timeout=10)
    assert again.status_code == 200


def test_a_client_leaving_during_pings_frees_its_slot(start_server, ollama):
    server = start_server(
        MAX_CONCURRENT_GENERATIONS="1", MAX_QUEUED_GENERATIONS="0", **PINGING
    )
    ollama.behaviour = Behaviour(first_delay=10.0)
    response = open_stream(server, NDJSON)
    assert next(response.iter_lines()) == b'{"event":"ping"}'
    response.close()
    assert ollama.wait_for_disconnect(timeout=3) is not None
    ollama.behaviour = Behaviour()
    deadline = time.monotonic() + 5
    while True:
        again = requests.post(
            server.url + "/chat", json={"message": "next"}, timeout=10
        )
        if again.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert again.status_code == 200, again.text


@pytest.mark.parametrize("accept", [SSE, NDJSON])
def test_a_reply_that_arrives_at_once_still_has_one_event_per_token(
    server, ollama, accept
):
    ollama.behaviour = Behaviour(tokens=BURST, burst=True)
    events = read_events(open_stream(server, accept), accept)
    assert [data["text"] for name, data in events if name == "token"] == BURST
    assert events[-1][0] == "done"
    assert events[-1][1]["usage"]["reply_tokens"] == len(BURST)


def test_a_plain_text_reply_that_arrives_at_once_is_byte_exact(server, ollama):
    tokens = ["Grüß", " 🙂", "\n", *BURST]
    ollama.behaviour = Behaviour(tokens=tokens, burst=True)
    assert open_stream(server, "text/plain").content == "".join(tokens).encode()
