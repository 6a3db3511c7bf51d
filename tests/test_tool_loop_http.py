"""Agents with tools through the real server: the loop, its events, memory, limits.

The fake model servers play a model that calls tools (scripted replies); a
loopback service stands in for Home Assistant.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests

from bench.prefix_cache import text_tokens
from tests.conftest import TOOL_TOKEN as TOKEN
from tests.support.documented import Document
from tests.support.fake_ollama import Step
from tests.support.logs import request_line
from tests.test_openai_upstream import start_openai
from tests.test_stream_formats import NDJSON, PINGING, SSE, read_events

SIX_BY_SEVEN = {"name": "calculator", "arguments": {"expression": "6*7"}}
ANSWER = ["It is ", "42."]


@pytest.fixture
def target(tool_target):
    return tool_target


@pytest.fixture
def server(start_server, ollama, tool_env):
    return start_server(**tool_env)


def chat(server, message="what is 6*7?", agent="helper", rid=None, **body):
    body = {"message": message, "agent": agent, **body}
    headers = {"X-Request-Id": rid} if rid else {}
    return requests.post(server.url + "/chat", json=body, headers=headers, timeout=20)


def stream(server, accept, message="what is 6*7?", agent="helper", **body):
    body = {"message": message, "agent": agent, "stream": True, **body}
    return requests.post(
        server.url + "/chat", json=body, headers={"Accept": accept}, timeout=20
    )


def cid() -> str:
    return f"tools-{uuid.uuid4().hex}"


def test_json_reply_runs_the_tool_and_lists_the_call(server, ollama):
    ollama.behaviour.script = [Step(calls=[SIX_BY_SEVEN]), Step(text=ANSWER)]
    response = chat(server)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reply"] == "It is 42."
    [call] = body["tool_calls"]
    assert call["name"] == "calculator"
    assert call["arguments"] == {"expression": "6*7"}
    assert json.loads(call["result"]) == {"result": 42}
    assert call["error"] is False and call["duration_s"] >= 0
    assert body["usage"]["reply_tokens"] == len(ANSWER)
    first, second = ollama.requests
    assert [t["function"]["name"] for t in first["tools"]] == ["clock", "calculator"]
    assert second["tools"] == first["tools"]
    assert second["messages"][-2:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "calculator", "arguments": {"expression": "6*7"}}}
            ],
        },
        {"role": "tool", "content": '{"result": 42}', "tool_name": "calculator"},
    ]


def test_an_agent_without_tools_is_plain_chat(server, ollama):
    response = chat(server, agent="general")
    assert "tool_calls" not in response.json()
    assert "tools" not in ollama.requests[-1]


@pytest.mark.parametrize("accept", [SSE, NDJSON])
def test_streams_carry_tool_events_then_the_answer(server, ollama, accept):
    ollama.behaviour.script = [
        Step(calls=[SIX_BY_SEVEN, {"name": "clock", "arguments": {}}]),
        Step(text=ANSWER),
    ]
    events = read_events(stream(server, accept), accept)
    names = [name for name, _ in events]
    assert names == [
        "tool_call",
        "tool_result",
        "tool_call",
        "tool_result",
        "token",
        "token",
        "done",
    ]
    call, result = events[0][1], events[1][1]
    assert call["name"] == "calculator"
    assert call["arguments"] == {"expression": "6*7"}
    assert result["id"] == call["id"]
    assert json.loads(result["result"]) == {"result": 42}
    assert result["error"] is False
    clock = json.loads(events[3][1]["result"])
    assert clock["timezone"] == "UTC" and len(clock["date"]) == 10


def test_plain_text_streams_only_the_text(server, ollama):
    ollama.behaviour.script = [Step(calls=[SIX_BY_SEVEN]), Step(text=ANSWER)]
    response = stream(server, "text/plain")
    assert response.status_code == 200
    assert response.text == "It is 42."


def test_the_next_turn_repeats_this_turns_prompt_exactly(server, ollama):
    """The prompt cache stays warm: turn two's prompt starts with turn one's
    last prompt and its reply, byte for byte, tool messages included."""
    conversation = cid()
    # Arguments in an order a sort would change: they must come back as sent.
    odd = {"name": "clock", "arguments": {"b": 1, "a": 2}}
    ollama.behaviour.script = [Step(calls=[SIX_BY_SEVEN, odd]), Step(text=ANSWER)]
    first = chat(server, conversation_id=conversation)
    assert first.status_code == 200
    second = chat(server, "and 7*8?", conversation_id=conversation)
    assert second.status_code == 200
    last_of_one, two = ollama.requests[1], ollama.requests[2]
    assert json.dumps(
        two["messages"][: len(last_of_one["messages"]) + 1]
    ) == json.dumps(
        [*last_of_one["messages"], {"role": "assistant", "content": "It is 42."}]
    )
    assert two["tools"] == last_of_one["tools"]
    # The fake's prompt cache agrees: turn two read about its new message only.
    assert ollama.evaluations[2].evaluated == len(text_tokens("and 7*8?")) + 4
    assert (
        second.json()["usage"]["cached_prompt_tokens"] == ollama.evaluations[2].cached
    )


def test_the_conversation_shows_tool_messages(server, ollama):
    conversation = cid()
    ollama.behaviour.script = [Step(calls=[SIX_BY_SEVEN]), Step(text=ANSWER)]
    chat(server, conversation_id=conversation)
    shown = requests.get(f"{server.url}/conversations/{conversation}", timeout=5)
    messages = shown.json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    call = messages[1]["tool_calls"][0]
    assert (call["name"], call["arguments"]) == ("calculator", {"expression": "6*7"})
    assert messages[2] == {
        "role": "tool",
        "content": '{"result": 42}',
        "tool_call_id": call["id"],
        "name": "calculator",
    }
    assert messages[3] == {"role": "assistant", "content": "It is 42."}


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        ({"name": "weather", "arguments": {}}, "unknown tool 'weather'"),
        (
            {"name": "calculator", "arguments": {"expression": "1", "x": 1}},
            "unknown argument",
        ),
        ({"name": "calculator", "arguments": {"expression": 6}}, "JSON string"),
        ({"name": "calculator", "arguments": "6*7"}, "not valid JSON"),
    ],
)
def test_a_bad_call_is_an_error_for_the_model_not_the_client(
    server, ollama, call, needle
):
    ollama.behaviour.script = [Step(calls=[call]), Step(text=["Sorry."])]
    response = chat(server)
    assert response.status_code == 200
    [record] = response.json()["tool_calls"]
    assert record["error"] is True
    assert needle in json.loads(record["result"])["error"]
    tool_message = ollama.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool"
    assert needle in json.loads(tool_message["content"])["error"]


@pytest.fixture
def limited(start_server, ollama, tool_env):
    return start_server(MAX_TOOL_STEPS="2", **tool_env)


def test_past_max_tool_steps_the_turn_ends_with_a_note_and_is_kept(limited, ollama):
    conversation = cid()
    ollama.behaviour.script = [Step(calls=[SIX_BY_SEVEN]) for _ in range(3)]
    response = chat(limited, conversation_id=conversation, rid=conversation)
    assert response.status_code == 200
    body = response.json()
    assert "MAX_TOOL_STEPS=2" in body["reply"]
    assert len(body["tool_calls"]) == 2
    assert len(ollama.requests) == 3
    line = request_line(limited, conversation)
    assert line["ended"] == "tool_limit"
    shown = requests.get(f"{limited.url}/conversations/{conversation}", timeout=5)
    roles = [m["role"] for m in shown.json()["messages"]]
    assert roles == ["user"] + ["assistant", "tool"] * 3 + ["assistant"]
    last_result = shown.json()["messages"][-2]["content"]
    assert "not run: this turn reached MAX_TOOL_STEPS=2" in last_result


def test_the_step_limit_in_a_stream_is_a_note_then_done(limited, ollama):
    ollama.behaviour.script = [Step(calls=[SIX_BY_SEVEN]) for _ in range(3)]
    events = read_events(stream(limited, SSE), SSE)
    names = [name for name, _ in events]
    assert names == ["tool_call", "tool_result"] * 2 + ["token", "done"]
    assert "MAX_TOOL_STEPS=2" in events[-2][1]["text"]


def test_a_failure_after_a_tool_keeps_the_round_and_says_why(server, ollama):
    conversation = cid()
    ollama.behaviour.script = [
        Step(calls=[SIX_BY_SEVEN]),
        Step(fault="status_500"),
    ]
    events = read_events(stream(server, SSE, conversation_id=conversation), SSE)
    assert [name for name, _ in events] == ["tool_call", "tool_result", "error"]
    assert events[-1][1]["status"] == 502
    shown = requests.get(f"{server.url}/conversations/{conversation}", timeout=5)
    assert [m["role"] for m in shown.json()["messages"]] == [
        "user",
        "assistant",
        "tool",
    ]


def test_a_json_reply_that_fails_after_a_tool_stores_nothing(server, ollama):
    conversation = cid()
    ollama.behaviour.script = [Step(calls=[SIX_BY_SEVEN]), Step(fault="status_500")]
    response = chat(server, conversation_id=conversation)
    assert response.status_code == 502
    assert "Traceback" not in response.text
    shown = requests.get(f"{server.url}/conversations/{conversation}", timeout=5)
    assert shown.status_code == 404


def test_a_stream_pings_while_the_model_reads_a_tools_result(
    start_server, ollama, tool_env
):
    server = start_server(**PINGING, **tool_env)
    ollama.behaviour.script = [
        Step(calls=[SIX_BY_SEVEN]),
        Step(text=ANSWER, first_delay=1.0),
    ]
    names = [name for name, _ in read_events(stream(server, SSE), SSE)]
    assert names[:2] == ["tool_call", "tool_result"]
    assert "ping" in names[2:-3]
    assert names[-3:] == ["token", "token", "done"]


def test_the_request_log_names_the_tools_and_their_durations(server, ollama):
    conversation = cid()
    ollama.behaviour.script = [Step(calls=[SIX_BY_SEVEN]), Step(text=ANSWER)]
    chat(server, conversation_id=conversation, rid=conversation)
    line = request_line(server, conversation)
    [tool] = line["tools"]
    assert tool["name"] == "calculator" and tool["error"] is False
    assert tool["duration_s"] >= 0
    assert "arguments" not in tool and "result" not in tool
    assert "6*7" not in json.dumps(line)


def test_log_content_adds_the_arguments_and_results(start_server, ollama, tool_env):
    server = start_server(LOG_CONTENT="true", **tool_env)
    conversation = cid()
    ollama.behaviour.script = [Step(calls=[SIX_BY_SEVEN]), Step(text=ANSWER)]
    chat(server, conversation_id=conversation, rid=conversation)
    line = request_line(server, conversation)
    [tool] = line["tools"]
    assert tool["arguments"] == '{"expression":"6*7"}'
    assert json.loads(tool["result"]) == {"result": 42}


def test_the_http_tool_calls_the_allowed_service_with_the_token(server, ollama, target):
    url = f"{target.url}/api/states/light.hall"
    ollama.behaviour.script = [
        Step(calls=[{"name": "http", "arguments": {"url": url}}]),
        Step(text=["The light is on."]),
    ]
    response = chat(server, "is the hall light on?", agent="house")
    assert response.status_code == 200
    [record] = response.json()["tool_calls"]
    assert record["error"] is False
    seen = target.seen[-1]
    assert seen.path == "/api/states/light.hall"
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    sent = json.loads(ollama.requests[1]["messages"][-1]["content"])
    assert sent["body"] == {"path": "/api/states/light.hall", "method": "GET"}
    assert TOKEN not in response.text and TOKEN not in server.log()


def test_the_http_tool_refuses_a_url_outside_the_list(server, ollama, target):
    ollama.behaviour.script = [
        Step(calls=[{"name": "http", "arguments": {"url": f"{target.url}/admin"}}]),
        Step(text=["I may not."]),
    ]
    before = len(target.seen)
    [record] = chat(server, agent="house").json()["tool_calls"]
    assert record["error"] is True and "is not allowed" in record["result"]
    assert len(target.seen) == before


@pytest.mark.parametrize("path", ["drip?n=40&gap=0.1", "trickle?n=40&gap=0.1"])
def test_the_http_tools_deadline_holds_under_gevent(server, ollama, target, path):
    """A service that trickles its answer, or even its headers (each byte
    within the read timeout), is cut at http.timeout (1 s) by a timer."""
    url = f"{target.url}/api/{path}"
    ollama.behaviour.script = [
        Step(calls=[{"name": "http", "arguments": {"url": url}}]),
        Step(text=["Too slow."]),
    ]
    started = time.monotonic()
    [record] = chat(server, agent="house").json()["tool_calls"]
    assert time.monotonic() - started < 3.5
    assert record["error"] is True
    assert "longer than" in record["result"]
    assert record["duration_s"] < 1.5


@pytest.fixture
def openai_server(start_server, fake_openai, tool_env):
    return start_openai(start_server, fake_openai, **tool_env)


def test_the_loop_with_an_openai_compatible_server(openai_server, fake_openai):
    conversation = cid()
    fake_openai.behaviour.script = [Step(calls=[SIX_BY_SEVEN]), Step(text=ANSWER)]
    response = chat(openai_server, conversation_id=conversation)
    assert response.status_code == 200, response.text
    assert response.json()["reply"] == "It is 42."
    second = fake_openai.requests[1]
    assert second["messages"][-2:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_fake0",
                    "type": "function",
                    "function": {
                        "name": "calculator",
                        "arguments": '{"expression": "6*7"}',
                    },
                }
            ],
        },
        {"role": "tool", "content": '{"result": 42}', "tool_call_id": "call_fake0"},
    ]
    chat(openai_server, "and 7*8?", conversation_id=conversation)
    third = fake_openai.requests[2]
    assert third["messages"][: len(second["messages"]) + 1] == [
        *second["messages"],
        {"role": "assistant", "content": "It is 42."},
    ]
    assert fake_openai.evaluations[2].evaluated <= 8


def test_tool_answers_match_the_document(server, ollama):
    """What schemathesis cannot reach: a tool agent's JSON reply, its events
    in both stream formats and its stored conversation, against /openapi.json."""
    document = Document(server)
    conversation = cid()
    bad = {"name": "calculator", "arguments": "6*7"}  # arguments as raw text
    ollama.behaviour.script = [Step(calls=[SIX_BY_SEVEN, bad]), Step(text=ANSWER)]
    reply = chat(server, conversation_id=conversation).json()
    document.conforms("ChatReply", reply)
    assert reply["tool_calls"][1]["arguments"] == "6*7"
    schemas = {
        "token": "TokenEvent",
        "tool_call": "ToolCallEvent",
        "tool_result": "ToolResultEvent",
        "done": "DoneEvent",
    }
    for accept in (SSE, NDJSON):
        ollama.behaviour.script = [Step(calls=[SIX_BY_SEVEN, bad]), Step(text=ANSWER)]
        events = read_events(stream(server, accept), accept)
        assert {name for name, _ in events} == set(schemas)
        for name, data in events:
            document.conforms(schemas[name], data)
    shown = requests.get(f"{server.url}/conversations/{conversation}", timeout=5)
    document.conforms("Conversation", shown.json())


def test_the_deadline_during_a_tool_ends_the_turn_and_keeps_valid_history(
    start_server, ollama, tool_env, target
):
    """MAX_GENERATION_SECONDS runs out while a tool waits: the stream ends with
    a 504 error event, and memory answers the calls that got no result, so
    the next turn's history is still valid."""
    server = start_server(MAX_GENERATION_SECONDS="0.8", **tool_env)
    conversation = cid()
    slow = {"name": "http", "arguments": {"url": f"{target.url}/api/slow?s=3"}}
    ollama.behaviour.script = [Step(calls=[slow, slow]), Step(text=ANSWER)]
    response = stream(server, SSE, agent="house", conversation_id=conversation)
    events = read_events(response, SSE)
    assert [name for name, _ in events] == ["tool_call", "error"]
    assert events[-1][1]["status"] == 504
    shown = requests.get(f"{server.url}/conversations/{conversation}", timeout=5)
    messages = shown.json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]
    assert all("no result" in m["content"] for m in messages[2:])
    assert [m["tool_call_id"] for m in messages[2:]] == [
        c["id"] for c in messages[1]["tool_calls"]
    ]


def test_calls_past_eight_in_one_round_are_not_run(server, ollama):
    ollama.behaviour.script = [Step(calls=[SIX_BY_SEVEN] * 10), Step(text=ANSWER)]
    records = chat(server).json()["tool_calls"]
    assert [r["error"] for r in records] == [False] * 8 + [True] * 2
    assert "not run: at most 8 tool calls per round" in records[-1]["result"]
    assert len(ollama.requests[1]["messages"]) == 3 + 10  # every call answered


def test_plain_text_keeps_real_statuses_through_the_tool_rounds(server, ollama):
    """text/plain answers once text comes: a failure in a later round, before
    any text, still gets its status; the round that ran is kept, as in any
    stream."""
    conversation = cid()
    ollama.behaviour.script = [Step(calls=[SIX_BY_SEVEN]), Step(fault="status_503")]
    response = stream(server, "text/plain", conversation_id=conversation)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "busy" in response.json()["detail"]
    shown = requests.get(f"{server.url}/conversations/{conversation}", timeout=5)
    roles = [m["role"] for m in shown.json()["messages"]]
    assert roles == ["user", "assistant", "tool"]
