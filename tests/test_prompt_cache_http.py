"""The model's prompt cache through the real server, with the fakes' cache model.

The fakes keep the last prompt and reply per slot and count the tokens after
the first difference (bench.prefix_cache), as llama.cpp's server does, and
report them as Ollama 0.30+ and llama-server do. So these tests see what a
real model server would have to re-read on each turn, and what piagent says.
"""

from __future__ import annotations

import json
import uuid

import openai
import pytest
import requests

from bench.prefix_cache import text_tokens
from tests.support.fake_ollama import Behaviour
from tests.support.server import MODEL
from tests.test_openai_upstream import start_openai
from tests.test_stream_formats import read_events

QUESTIONS = [f"question {i}: what would you cook with {i} eggs?" for i in range(16)]
REPLY_TOKENS = ["A", " frittata", " with", " herbs", "."]


def new_message_cost(message: str) -> int:
    """What a turn costs when the cache is warm: the previous reply's end
    marker, the user marker, the message, its end marker, the reply marker."""
    return len(text_tokens(message)) + 4


def unique(name: str) -> str:
    """A conversation of this test's own: the servers are shared."""
    return f"{name}-{uuid.uuid4().hex}"


def talk(server, cid: str, questions=QUESTIONS) -> list[dict]:
    usages = []
    for question in questions:
        response = requests.post(
            server.url + "/chat",
            json={"message": question, "conversation_id": cid},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        usages.append(response.json()["usage"])
    return usages


def evaluated(usage: dict) -> int:
    return usage["prompt_tokens"] - usage["cached_prompt_tokens"]


def test_default_window_keeps_the_cache_warm_between_rare_cuts(start_server, ollama):
    ollama.behaviour = Behaviour(tokens=REPLY_TOKENS)
    server = start_server()
    usages = talk(server, unique("warm"))
    assert [u["cached_prompt_tokens"] for u in usages][0] == 0
    assert all(u["cached_prompt_tokens"] is not None for u in usages)
    assert [evaluated(u) for u in usages] == [c.evaluated for c in ollama.evaluations]
    warm = [
        n
        for n, usage in enumerate(usages[1:], 1)
        if evaluated(usage) == new_message_cost(QUESTIONS[n])
    ]
    cuts = sorted(set(range(1, len(usages))) - set(warm))
    # MEMORY_MAX_TURNS=8 holds 4 exchanges; the default MEMORY_TRIM_TO keeps
    # room for at least one more before the next cut.
    assert len(cuts) <= len(usages) // 2 - 1, cuts
    for n in cuts:
        assert evaluated(usages[n]) > new_message_cost(QUESTIONS[n])


def test_sliding_window_reads_the_whole_history_every_turn(start_server, ollama):
    """MEMORY_TRIM_TO = MEMORY_MAX_TURNS - 2 is the window before cuts in
    blocks: once full, every turn re-reads everything after the system prompt."""
    ollama.behaviour = Behaviour(tokens=REPLY_TOKENS)
    sliding = talk(start_server(MEMORY_TRIM_TO="6"), unique("slide"))
    ollama.reset()
    ollama.behaviour = Behaviour(tokens=REPLY_TOKENS)
    default = talk(start_server(), unique("blocks"))
    assert all(
        evaluated(u) > new_message_cost(QUESTIONS[n])
        for n, u in enumerate(sliding[5:], 5)
    )
    assert sum(map(evaluated, default)) < sum(map(evaluated, sliding)) / 2


def test_requests_are_byte_stable_turn_to_turn(start_server, ollama):
    """Nothing volatile reaches the model: the system prompt is the agent's,
    options and keep_alive never change, and each prompt extends the last
    with the reply exactly as the model produced it (spaces included)."""
    ollama.behaviour = Behaviour(tokens=["  Two ", "spaces\n", "\n"])
    server = start_server()
    talk(server, unique("stable"), QUESTIONS[:4])
    first, *rest = ollama.requests
    for request in rest:
        assert {k: v for k, v in request.items() if k != "messages"} == {
            k: v for k, v in first.items() if k != "messages"
        }
    for earlier, later in zip(ollama.requests, rest, strict=False):
        reply = {"role": "assistant", "content": "  Two spaces\n\n"}
        assert later["messages"][: len(earlier["messages"]) + 1] == [
            *earlier["messages"],
            reply,
        ]
    assert ollama.requests[0]["messages"][0]["content"].startswith(
        "You are a helpful assistant"
    )


def test_partial_reply_is_what_the_next_prompt_repeats(start_server, ollama):
    ollama.behaviour = Behaviour(fault="error_line", fault_after=2)
    server = start_server()
    cid = unique("cut-off")
    response = requests.post(
        server.url + "/chat",
        json={"message": "q", "conversation_id": cid, "stream": True},
        stream=True,
        timeout=10,
    )
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        response.content  # noqa: B018 - reads the whole body
    ollama.behaviour = Behaviour()
    [usage] = talk(server, cid, ["again"])
    # The slot holds the prompt and the two tokens produced; the next prompt
    # repeats them exactly, so only the new message is read.
    assert evaluated(usage) == new_message_cost("again")


def test_sse_done_event_and_log_report_the_cache(start_server, ollama):
    server = start_server(LOG_FORMAT="json")
    cid, rid = unique("sse"), unique("sse-cache")
    talk(server, cid, QUESTIONS[:1])
    response = requests.post(
        server.url + "/chat",
        json={"message": QUESTIONS[1], "conversation_id": cid, "stream": True},
        headers={"Accept": "text/event-stream", "X-Request-Id": rid},
        stream=True,
        timeout=10,
    )
    name, done = read_events(response, "text/event-stream")[-1]
    assert name == "done"
    cost = ollama.evaluations[-1]
    assert done["usage"]["cached_prompt_tokens"] == cost.cached > 0
    log = server.wait_for_log(f'"request_id":"{rid}"')
    [record] = [json.loads(line) for line in log.splitlines() if rid in line]
    assert record["cached_prompt_tokens"] == cost.cached


def test_openai_compatible_server_reports_the_cache(start_server, fake_openai):
    fake_openai.behaviour = Behaviour(tokens=REPLY_TOKENS, models=(MODEL,))
    server = start_openai(start_server, fake_openai)
    usages = talk(server, unique("llama"), QUESTIONS[:3])
    costs = fake_openai.evaluations
    assert [u["cached_prompt_tokens"] for u in usages] == [c.cached for c in costs]
    assert [u["prompt_tokens"] for u in usages] == [c.total for c in costs]
    assert evaluated(usages[2]) == new_message_cost(QUESTIONS[2])


def test_v1_usage_names_the_cached_tokens(server, ollama):
    with openai.OpenAI(
        base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=10
    ) as client:
        messages = [{"role": "user", "content": "hello"}]
        first = client.chat.completions.create(model="general", messages=messages)
        messages += [
            {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": "and now?"},
        ]
        second = client.chat.completions.create(model="general", messages=messages)
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert second.usage.prompt_tokens_details.cached_tokens == (
        ollama.evaluations[-1].cached
    )
    assert second.usage.prompt_tokens_details.cached_tokens > 0
