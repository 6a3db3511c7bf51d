"""/ollama with the official `ollama` Python package as caller, through the real
gunicorn in front of the fake Ollama: the agents as models, chat streamed and
not, tools, format, thinking, and the errors a client sees."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import requests
from ollama import Client, ResponseError

from tests.support.fake_ollama import DEFAULT_TOKENS, DETAILS, Step
from tests.support.server import MODEL
from tests.test_openai_upstream import start_openai

REPLY = "".join(DEFAULT_TOKENS)
KEY = "living-room-0123456789abcdef"
HELLO = [{"role": "user", "content": "hello"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def client_for(server, key: str | None = None) -> Client:
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return Client(host=server.url + "/ollama", headers=headers, timeout=10)


@pytest.fixture
def client(server):
    with client_for(server) as found:
        yield found


@pytest.fixture
def guarded(start_server, ollama):
    return start_server(API_KEYS=KEY)


def test_the_agents_are_listed_as_models_with_their_models_details(client, ollama):
    [model] = client.list().models
    assert model.model == "general:latest"
    assert model.details.family == DETAILS["family"]
    assert model.details.parameter_size == DETAILS["parameter_size"]
    assert model.size and len(model.digest) == 64


def test_show_gives_the_model_servers_details_and_the_agents_prompt(client, ollama):
    shown = client.show("general:latest")
    assert "tools" in shown.capabilities
    assert shown.modelinfo["qwen2.context_length"] == 32768
    assert shown.details.quantization_level == "Q4_K_M"
    assert client.show("general").details.family == "qwen2"


def test_ps_lists_an_agent_once_its_model_is_loaded(client, ollama):
    ollama._mark_loaded(MODEL, True)
    [running] = client.ps().models
    assert running.model == "general:latest"
    # The model server's own figures, not piagent's stand-ins (its start, 0).
    assert running.size_vram == 1
    ahead = running.expires_at - datetime.now(UTC)
    assert timedelta(seconds=200) < ahead <= timedelta(seconds=300)


def test_a_streamed_chat_arrives_line_by_line_and_ends_with_the_counts(client, ollama):
    parts = list(client.chat(model="general:latest", messages=HELLO, stream=True))
    assert "".join(p.message.content for p in parts) == REPLY
    assert all(p.model == "general:latest" for p in parts)
    last = parts[-1]
    assert last.done and last.done_reason == "stop"
    assert last.eval_count == len(DEFAULT_TOKENS)
    assert last.prompt_eval_count and last.total_duration and last.eval_duration
    assert not any(p.done for p in parts[:-1])


def test_a_whole_chat_answers_once(client, ollama):
    reply = client.chat(model="general", messages=HELLO, stream=False)
    assert reply.message.content == REPLY
    assert reply.model == "general" and reply.done and reply.done_reason == "stop"
    sent = ollama.requests[-1]
    assert sent["messages"][0]["role"] == "system"
    assert sent["messages"][1:] == HELLO


def test_tool_calls_come_back_with_arguments_as_objects(client, ollama):
    call = {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}
    ollama.behaviour.script = [Step(calls=[call]), Step(calls=[call])]
    parts = list(
        client.chat(model="general", messages=HELLO, tools=[WEATHER], stream=True)
    )
    [calls] = [p.message.tool_calls for p in parts if p.message.tool_calls]
    assert calls[0].function.name == "get_weather"
    assert dict(calls[0].function.arguments) == {"city": "Paris", "days": 2}
    assert parts[-1].done
    assert ollama.requests[-1]["tools"] == [WEATHER]
    whole = client.chat(model="general", messages=HELLO, tools=[WEATHER])
    assert whole.message.tool_calls[0].function.arguments == {
        "city": "Paris",
        "days": 2,
    }


def test_tool_results_reach_ollama_with_the_call_they_answer(client, ollama):
    history = [
        *HELLO,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
            ],
        },
        {"role": "tool", "content": "-3 °C", "tool_name": "get_weather"},
    ]
    client.chat(model="general", messages=history, tools=[WEATHER], stream=False)
    sent = ollama.requests[-1]["messages"]
    assert sent[2:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
            ],
        },
        {"role": "tool", "content": "-3 °C", "tool_name": "get_weather"},
    ]


def test_format_and_think_pass_to_ollama(client, ollama):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    client.chat(model="general", messages=HELLO, format=schema, think=True)
    sent = ollama.requests[-1]
    assert sent["format"] == schema and sent["think"] is True
    client.chat(model="general", messages=HELLO, format="json", think="low")
    assert ollama.requests[-1]["format"] == "json"
    assert ollama.requests[-1]["think"] == "low"


def test_thinking_passes_through_streamed_and_whole(client, ollama):
    step = Step(text=["Four."], thinking=["Two and ", "two."])
    ollama.behaviour.script = [
        step,
        Step(text=["Four."], thinking=["Two and ", "two."]),
    ]
    parts = list(client.chat(model="general", messages=HELLO, think=True, stream=True))
    thoughts = [p.message.thinking for p in parts if p.message.thinking]
    assert thoughts == ["Two and ", "two."]
    assert "".join(p.message.content for p in parts) == "Four."
    whole = client.chat(model="general", messages=HELLO, think=True)
    assert whole.message.thinking == "Two and two."
    assert whole.message.content == "Four."


def test_an_unknown_model_is_ollamas_404(client, ollama):
    for call in (
        lambda: client.chat(model="nobody", messages=HELLO),
        lambda: list(client.chat(model="nobody:7b", messages=HELLO, stream=True)),
        lambda: client.show("nobody"),
        lambda: client.pull("nobody"),
    ):
        with pytest.raises(ResponseError) as caught:
            call()
        assert caught.value.status_code == 404
        assert caught.value.error.startswith('model "nobody')
        assert caught.value.error.endswith('" not found')


def test_pull_of_an_agent_is_success_without_downloading(client, ollama):
    assert client.pull("general:latest").status == "success"
    assert [p.status for p in client.pull("general", stream=True)] == ["success"]
    assert not ollama.requests


def test_a_stream_broken_mid_way_ends_with_an_error_line(client, ollama):
    ollama.behaviour.fault = "drop"
    with pytest.raises(ResponseError) as caught:
        list(client.chat(model="general", messages=HELLO, stream=True))
    assert "dropped the stream" in caught.value.error


def test_a_missing_or_wrong_key_is_401_in_ollamas_shape(guarded):
    for key in (None, "wrong-key-0123456789abcdef"):
        with (
            client_for(guarded, key) as refused,
            pytest.raises(ResponseError) as caught,
        ):
            refused.list()
        assert caught.value.status_code == 401
        assert "API key" in caught.value.error
    answer = requests.get(guarded.url + "/ollama/api/tags", timeout=5)
    assert answer.status_code == 401 and set(answer.json()) == {"error"}
    with client_for(guarded, KEY) as allowed:
        assert allowed.list().models


def test_the_greeting_needs_no_key(guarded):
    answer = requests.get(guarded.url + "/ollama", timeout=5)
    assert answer.status_code == 200 and answer.text == "Ollama is running"
    assert requests.head(guarded.url + "/ollama/", timeout=5).status_code == 200


def test_the_stream_is_ndjson_with_ollamas_fields_on_every_line(server, ollama):
    answer = requests.post(
        server.url + "/ollama/api/chat",
        json={"model": "general:latest", "messages": HELLO},
        timeout=10,
    )
    assert answer.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in answer.text.splitlines()]
    for line in lines:
        assert list(line)[:3] == ["model", "created_at", "message"] and "done" in line
        assert line["created_at"].endswith("Z") and "." in line["created_at"]
    assert lines[-1]["message"] == {"role": "assistant", "content": ""}
    # Go's field order (api/types.go ChatResponse): done_reason, done, metrics.
    assert list(lines[-1])[3:5] == ["done_reason", "done"]
    assert set(lines[-1]) >= {
        "done_reason",
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    }


@pytest.fixture
def openai_client(start_server, fake_openai):
    server = start_openai(start_server, fake_openai)
    with client_for(server) as found:
        yield found


def test_with_an_openai_server_format_becomes_response_format(
    openai_client, fake_openai
):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    reply = openai_client.chat(
        model="general", messages=HELLO, format=schema, think=True, keep_alive=-1
    )
    assert reply.message.content == REPLY and reply.done_reason == "stop"
    assert reply.total_duration and reply.eval_duration is not None
    sent = fake_openai.requests[-1]
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": schema, "strict": True},
    }
    assert not {"think", "keep_alive", "format", "options"} & set(sent)
    openai_client.chat(model="general", messages=HELLO, format="json")
    assert fake_openai.requests[-1]["response_format"] == {"type": "json_object"}


def test_with_an_openai_server_reasoning_content_is_thinking(
    openai_client, fake_openai
):
    fake_openai.behaviour.script = [Step(text=["Four."], thinking=["Two and two."])]
    parts = list(openai_client.chat(model="general", messages=HELLO, stream=True))
    assert [p.message.thinking for p in parts if p.message.thinking] == ["Two and two."]
    assert "".join(p.message.content for p in parts) == "Four."


def test_with_an_openai_server_the_agents_are_listed_plainly(openai_client):
    [model] = openai_client.list().models
    assert model.model == "general:latest" and model.details.format == ""
    assert openai_client.show("general").capabilities == ["completion", "tools"]
    assert openai_client.ps().models == []


def test_chat_and_v1_leave_the_thinking_out(server, ollama):
    ollama.behaviour.script = [
        Step(text=["Four."], thinking=["Two and two."]) for _ in range(3)
    ]
    chat = requests.post(server.url + "/chat", json={"message": "hi"}, timeout=10)
    assert chat.json()["reply"] == "Four."
    streamed = requests.post(
        server.url + "/chat", json={"message": "hi", "stream": True}, timeout=10
    )
    assert streamed.text == "Four."
    v1 = requests.post(
        server.url + "/v1/chat/completions",
        json={"model": "general", "messages": HELLO},
        timeout=10,
    )
    assert v1.json()["choices"][0]["message"]["content"] == "Four."
