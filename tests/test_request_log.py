"""One request log line per request, through the real server, written at the end."""

from __future__ import annotations

import json
import re
import uuid

import pytest
import requests

from tests.support.fake_ollama import DEFAULT_TOKENS, Behaviour
from tests.support.logs import request_line
from tests.support.server import MODEL

FIELDS = [
    "time",
    "request_id",
    "client",
    "key",
    "method",
    "path",
    "status",
    "duration_s",
    "agent",
    "model",
    "conversation_id",
    "prompt_tokens",
    "cached_prompt_tokens",
    "reply_tokens",
    "ttft_s",
    "tokens_per_s",
    "ended",
]


@pytest.fixture
def json_server(start_server, ollama):
    return start_server(LOG_FORMAT="json")


def chat(server, body, rid, **kwargs):
    return requests.post(
        server.url + "/chat",
        json=body,
        headers={"X-Request-Id": rid},
        timeout=10,
        **kwargs,
    )


def new_id() -> str:
    return uuid.uuid4().hex


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_chat_line_has_every_fact_and_no_message_text(json_server, ollama, stream):
    ollama.behaviour = Behaviour(delay=0.02)
    rid = new_id()
    response = chat(json_server, {"message": "secret words", "stream": stream}, rid)
    assert response.status_code == 200
    assert response.headers["X-Request-Id"] == rid
    record = request_line(json_server, rid)
    assert list(record) == FIELDS
    assert record["method"] == "POST" and record["path"] == "/chat"
    assert record["status"] == 200 and record["client"] == "127.0.0.1"
    assert record["key"] is None  # no API keys: one owner, unnamed
    assert record["agent"] == "general" and record["model"] == MODEL
    assert record["conversation_id"] == response.headers["X-Conversation-Id"]
    assert record["prompt_tokens"] > 0
    [cost] = ollama.evaluations
    assert record["cached_prompt_tokens"] == cost.cached
    assert record["reply_tokens"] == len(DEFAULT_TOKENS)
    assert 0 <= record["ttft_s"] <= record["duration_s"]
    assert record["tokens_per_s"] > 0
    assert record["ended"] == "ok"
    assert "secret words" not in json_server.log()
    assert "Bonjour" not in json.dumps(record)


def test_stream_line_is_written_when_the_stream_ends(json_server, ollama):
    ollama.behaviour = Behaviour(delay=0.3)
    rid = new_id()
    response = chat(json_server, {"message": "hi", "stream": True}, rid, stream=True)
    chunks = response.iter_content(chunk_size=None)
    next(chunks)
    assert f'"request_id":"{rid}"' not in json_server.log()
    assert b"".join(chunks)
    record = request_line(json_server, rid)
    # Most of the time was spent streaming, after the view had returned.
    assert record["duration_s"] >= 0.3 * (len(DEFAULT_TOKENS) - 2)


def test_client_that_leaves_is_logged_as_client_gone(json_server, ollama):
    ollama.behaviour = Behaviour(tokens=[f"w{i} " for i in range(50)], delay=0.1)
    rid = new_id()
    response = chat(json_server, {"message": "hi", "stream": True}, rid, stream=True)
    next(response.iter_content(chunk_size=None))
    response.close()
    record = request_line(json_server, rid, timeout=10)
    assert record["status"] == 200
    assert record["ended"] == "client_gone"
    assert record["reply_tokens"] < 50


@pytest.mark.parametrize(
    ("fault", "stream", "status", "ended"),
    [
        ("error_line", True, 200, "upstream_error"),
        ("hang_mid", True, 200, "timeout"),
        ("status_500", True, 502, "upstream_error"),
        ("status_503", False, 503, "upstream_error"),
        ("hang", False, 504, "timeout"),
    ],
)
def test_failures_are_logged_with_how_they_ended(
    json_server, ollama, fault, stream, status, ended
):
    ollama.behaviour = Behaviour(fault=fault)
    rid = new_id()
    response = chat(json_server, {"message": "hi", "stream": stream}, rid, stream=True)
    assert response.status_code == status
    if status == 200:  # cut short after the first tokens
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            response.content  # noqa: B018 - reads the whole body
    record = request_line(json_server, rid)
    assert (record["status"], record["ended"]) == (status, ended)


def test_rejected_request_is_logged_and_still_gets_its_request_id(json_server):
    rid = new_id()
    response = chat(json_server, {"message": ""}, rid)
    assert response.status_code == 422
    assert response.headers["X-Request-Id"] == rid
    record = request_line(json_server, rid)
    assert record["ended"] == "rejected" and record["agent"] is None


@pytest.mark.parametrize("given", ["", "a b", "x" * 129, "bad\u00e9id"])
def test_unsafe_or_missing_request_id_is_replaced_by_a_new_one(json_server, given):
    headers = {"X-Request-Id": given.encode()} if given else {}
    response = requests.get(json_server.url + "/health", headers=headers, timeout=5)
    rid = response.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    assert request_line(json_server, rid)["path"] == "/health"


def test_log_content_adds_message_and_reply(start_server, ollama):
    server = start_server(LOG_FORMAT="json", LOG_CONTENT="true")
    rid = new_id()
    chat(server, {"message": "what is 2+2", "stream": True}, rid)
    record = request_line(server, rid)
    assert record["message"] == "what is 2+2"
    assert record["reply"] == "".join(DEFAULT_TOKENS)


def test_text_format_is_one_readable_line_and_no_gunicorn_access_line(
    start_server, ollama
):
    server = start_server(LOG_FORMAT="text")
    rid = new_id()
    chat(server, {"message": "hi", "conversation_id": "kitchen"}, rid)
    text = server.wait_for_log(f"rid={rid}")
    [line] = [line for line in text.splitlines() if f"rid={rid}" in line]
    assert '127.0.0.1 "POST /chat" 200 ' in line
    assert " ok rid=" in line and "conv=kitchen" in line and " key=" not in line
    assert f"model={MODEL}" in line and "reply=9tok" in line
    cost = ollama.evaluations[-1]
    assert f" prompt={cost.total}tok cached={cost.cached}tok reply=9tok " in line
    assert "HTTP/1.1" not in text  # gunicorn's own access log is off
    assert not any(line.startswith("{") for line in text.splitlines())
