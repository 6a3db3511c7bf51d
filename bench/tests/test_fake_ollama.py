"""The fake Ollama speaks Ollama's wire format and records disconnects.

Why test a benchmark tool: if the fake drifted from Ollama's format, piagent
would be measured against something it never meets in production. No test here
asserts a timing; only behaviour.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest

from bench.fake_ollama import parse_plan
from bench.http_client import HttpConnection, one_request
from bench.processes import FakeOllamaProcess, http_get, make_log_dir


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOllamaProcess]:
    process = FakeOllamaProcess(make_log_dir(), "bench-model")
    process.start()
    yield process
    process.stop()


def chat_body(message: str, model: str = "bench-model", stream: bool = True) -> bytes:
    messages = [
        {"role": "system", "content": "tokens=999 is in the system prompt"},
        {"role": "user", "content": message},
    ]
    return json.dumps({"model": model, "messages": messages, "stream": stream}).encode()


def test_plan_words_are_read_anywhere_in_the_message() -> None:
    plan = parse_plan("please: bench tokens=7 delay_ms=2.5 first_ms=10 id=run-1 x=y")
    assert plan.tokens == 7
    assert plan.delay_s == pytest.approx(0.0025)
    assert plan.first_s == pytest.approx(0.01)
    assert plan.record_id == "run-1"
    assert parse_plan("hello").tokens == 20


def test_root_and_tags(fake: FakeOllamaProcess) -> None:
    assert http_get(fake.port, "/") == (200, b"Ollama is running")
    status, body = http_get(fake.port, "/api/tags")
    assert status == 200
    assert json.loads(body) == {
        "models": [{"name": "bench-model", "model": "bench-model"}]
    }


def test_unknown_model_is_404_with_ollamas_message(fake: FakeOllamaProcess) -> None:
    response = asyncio.run(
        one_request("127.0.0.1", fake.port, "POST", "/api/chat", chat_body("hi", "x"))
    )
    assert response.status == 404
    assert response.json() == {"error": 'model "x" not found, try pulling it first'}


@pytest.mark.parametrize("message", ["tokens=3", "tokens=3 delay_ms=1", "tokens=600"])
def test_stream_is_ndjson_one_line_per_chunk(
    fake: FakeOllamaProcess, message: str
) -> None:
    response = asyncio.run(
        one_request("127.0.0.1", fake.port, "POST", "/api/chat", chat_body(message))
    )
    tokens = parse_plan(message).tokens
    assert response.status == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["transfer-encoding"] == "chunked"
    lines = [json.loads(part) for part in response.body_parts]
    assert all(part.endswith(b"\n") for part in response.body_parts)
    assert len(lines) == tokens + 1
    assert all(
        line["message"] == {"role": "assistant", "content": "tok "}
        for line in lines[:-1]
    )
    assert not any(line["done"] for line in lines[:-1])
    final = lines[-1]
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["eval_count"] == tokens
    assert final["message"]["content"] == ""


def test_non_stream_reply_and_keep_alive(fake: FakeOllamaProcess) -> None:
    async def two() -> list:
        connection = HttpConnection("127.0.0.1", fake.port)
        first = await connection.request(
            "POST", "/api/chat", chat_body("tokens=4", stream=False)
        )
        second = await connection.request("POST", "/api/chat", chat_body("tokens=2"))
        connection.close()
        return [first, second]

    first, second = asyncio.run(two())
    assert first.json()["message"]["content"] == "tok " * 4
    assert second.ok and second.body.count(b'"done":false') == 2


def test_disconnect_is_noticed_before_the_next_token(fake: FakeOllamaProcess) -> None:
    record_id = f"test-disc-{time.monotonic_ns()}"
    body = chat_body(f"tokens=100 delay_ms=20 id={record_id}")
    response = asyncio.run(
        one_request(
            "127.0.0.1", fake.port, "POST", "/api/chat", body, stop_after_chunks=2
        )
    )
    assert response.closed_at is not None
    deadline = time.monotonic() + 5
    record = None
    while time.monotonic() < deadline:
        status, raw = http_get(fake.port, f"/_stats?id={record_id}")
        record = json.loads(raw)["records"][record_id]
        if record["stop"] != "running":
            break
        time.sleep(0.02)
    assert record is not None
    assert record["stop"] == "peer-closed"
    assert record["written"] < 100
    assert all(t <= record["peer_closed_at"] for t in record["write_times"])
