"""PROVIDER=openai through the real server, against a fake OpenAI-style server."""

import socket
import time

import pytest
import requests

from tests.support.fake_ollama import DEFAULT_TOKENS, Behaviour
from tests.support.faults import BEFORE_FIRST_TOKEN, assert_real_status
from tests.support.server import MODEL
from tests.test_memory_http import read_chunks
from tests.test_queue_http import raw_request

REPLY = "".join(DEFAULT_TOKENS)


def start_openai(start_server, fake_openai, **env):
    """A server in front of the fake OpenAI-compatible server."""
    base = fake_openai.url + "/v1"
    return start_server(
        PROVIDER="openai", OPENAI_BASE_URL=base, OPENAI_MODEL_GENERAL=MODEL, **env
    )


@pytest.fixture
def server(start_server, fake_openai):
    return start_openai(start_server, fake_openai)


def post(server, body, **kwargs):
    kwargs.setdefault("timeout", 10)
    return requests.post(server.url + "/chat", json=body, **kwargs)


def test_json_reply_comes_from_the_openai_server(server, fake_openai):
    response = post(server, {"message": "hello"})
    assert response.status_code == 200
    body = response.json()
    assert (body["reply"], body["model"], body["provider"]) == (REPLY, MODEL, "openai")
    sent = fake_openai.requests[-1]
    assert sent["model"] == MODEL and sent["stream"] is True
    assert sent["messages"][0]["role"] == "system"
    assert sent["messages"][-1] == {"role": "user", "content": "hello"}
    assert body["usage"]["reply_tokens"] == len(DEFAULT_TOKENS)
    assert body["usage"]["prompt_tokens"] > 0


def test_tokens_stream_as_the_server_sends_them(server, fake_openai):
    tokens = [f"t{i} " for i in range(6)]
    fake_openai.behaviour = Behaviour(tokens=tokens, delay=0.1)
    response = post(server, {"message": "count", "stream": True}, stream=True)
    arrivals, chunks = [], []
    for chunk in response.iter_content(chunk_size=None):
        arrivals.append(time.monotonic())
        chunks.append(chunk.decode())
    assert chunks == tokens
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert min(gaps) > 0.05, gaps


def test_finish_reason_length_is_read_from_the_server(start_server, fake_openai):
    server = start_openai(start_server, fake_openai, MAX_TOKENS="3")
    response = requests.post(
        server.url + "/v1/chat/completions",
        json={"model": "general", "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    choice = response.json()["choices"][0]
    assert choice["message"]["content"] == "".join(DEFAULT_TOKENS[:3])
    assert choice["finish_reason"] == "length"
    assert fake_openai.requests[-1]["max_tokens"] == 3


def test_memory_carries_the_conversation(server, fake_openai):
    post(server, {"message": "one", "conversation_id": "oa"})
    post(server, {"message": "two", "conversation_id": "oa"})
    history = [(m["role"], m["content"]) for m in fake_openai.requests[-1]["messages"]]
    assert history[1:] == [("user", "one"), ("assistant", REPLY), ("user", "two")]


@pytest.mark.parametrize(("fault", "status", "needle"), BEFORE_FIRST_TOKEN)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_failure_before_first_token_gets_its_real_status(
    server, fake_openai, fault, status, needle, stream
):
    fake_openai.behaviour = Behaviour(fault=fault)
    response = post(server, {"message": "hi", "stream": stream})
    assert_real_status(response, status, needle)


def test_unknown_model_is_502_naming_it(server, fake_openai):
    fake_openai.behaviour = Behaviour(models=("other",))
    response = post(server, {"message": "hi"})
    assert response.status_code == 502
    detail = response.json()["detail"]
    assert f"model {MODEL!r} is not available" in detail
    assert "/models" in detail  # where to look the right name up


def test_unreachable_server_is_502_naming_it(start_server):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    server = start_server(PROVIDER="openai", OPENAI_BASE_URL=base)
    response = post(server, {"message": "hi"})
    assert response.status_code == 502
    assert (
        f"OpenAI-compatible server unreachable at {base}" in response.json()["detail"]
    )


def test_api_key_is_sent_to_the_server(start_server, fake_openai):
    fake_openai.api_key = "sk-local-key"
    without = start_openai(start_server, fake_openai)
    refused = post(without, {"message": "hi"})
    assert refused.status_code == 502 and "OPENAI_API_KEY" in refused.json()["detail"]
    keyed = start_openai(start_server, fake_openai, OPENAI_API_KEY="sk-local-key")
    assert post(keyed, {"message": "hi"}).status_code == 200


@pytest.mark.parametrize(
    ("fault", "logged"),
    [
        ("error_line", "boom"),
        ("malformed_line", "malformed line"),
        ("drop", "dropped the stream"),
        ("hang_mid", "sent nothing"),
        ("no_done", "without `data: [DONE]`"),
    ],
)
def test_failure_after_first_token_cuts_the_stream_and_keeps_the_part(
    server, fake_openai, fault, logged
):
    fake_openai.behaviour = Behaviour(fault=fault, fault_after=2)
    cid = f"cut-{fault}"
    response = post(
        server, {"message": "q", "stream": True, "conversation_id": cid}, stream=True
    )
    received = b""
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for chunk in response.iter_content(chunk_size=None):
            received += chunk
    expected = DEFAULT_TOKENS if fault == "no_done" else DEFAULT_TOKENS[:2]
    assert received == "".join(expected).encode()
    server.wait_for_log(logged)
    fake_openai.behaviour = Behaviour()
    post(server, {"message": "again", "conversation_id": cid})
    kept = fake_openai.requests[-1]["messages"][2]
    assert kept == {"role": "assistant", "content": "".join(expected)}


def test_client_leaving_closes_the_upstream_request(server, fake_openai):
    fake_openai.behaviour = Behaviour(tokens=[f"w{i} " for i in range(60)], delay=0.05)
    sock = raw_request(server, {"message": "long", "stream": True})
    read_chunks(sock, 3)
    sock.close()
    left = time.monotonic()
    disconnect = fake_openai.wait_for_disconnect(timeout=5)
    assert disconnect is not None, "upstream never closed"
    assert disconnect.remaining > 0
    assert disconnect.at - left < 1.0


def test_ready_asks_the_servers_model_list(server, fake_openai):
    ready = requests.get(server.url + "/ready", timeout=10)
    assert ready.status_code == 200
    assert ready.json()["models"] == {MODEL: {"pulled": True, "loaded": True}}
    fake_openai.behaviour = Behaviour(models=("other",))
    not_ready = requests.get(server.url + "/ready", timeout=10)
    assert not_ready.status_code == 503
    assert f"model {MODEL!r} is not listed" in not_ready.json()["detail"]


def test_warm_up_loads_the_model_with_a_one_token_request(start_server, fake_openai):
    server = start_openai(start_server, fake_openai, WARMUP="true")
    server.wait_for_log(f"warm-up: model {MODEL!r} loaded")
    [warm] = [r for r in fake_openai.requests if r.get("model") == MODEL]
    assert warm["max_tokens"] == 1
