"""OpenAI clients' own tools through /v1/chat/completions, with the openai package.

The client's tools, tool_choice, assistant tool_calls and tool messages pass
to the model server (in Ollama's format with PROVIDER=ollama, as they are with
PROVIDER=openai); the model's calls come back for the client to run, streamed
as OpenAI does. The agent's own tools are never offered here.
"""

from __future__ import annotations

import json

import openai
import pytest
import requests

from tests.support.documented import Document
from tests.support.fake_ollama import Step
from tests.test_openai_endpoint import client_for, in_process_client
from tests.test_openai_upstream import start_openai

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
ASK = [{"role": "user", "content": "Weather in Paris?"}]
CALL = {"name": "get_weather", "arguments": {"city": "Paris"}}


@pytest.fixture
def client(start_server, ollama, tool_env):
    with client_for(start_server(**tool_env)) as found:
        yield found


@pytest.fixture
def openai_client(start_server, fake_openai, tool_env):
    with client_for(start_openai(start_server, fake_openai, **tool_env)) as found:
        yield found


def test_a_tool_call_comes_back_with_finish_reason_tool_calls(client, ollama):
    ollama.behaviour.script = [Step(calls=[CALL])]
    completion = client.chat.completions.create(
        model="general", messages=ASK, tools=[WEATHER]
    )
    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert ollama.requests[-1]["tools"] == [WEATHER]


def test_streamed_tool_calls_come_as_one_delta_each(client, ollama):
    ollama.behaviour.script = [
        Step(text=["Checking."], calls=[CALL, {**CALL, "arguments": {"city": "Oslo"}}])
    ]
    chunks = list(
        client.chat.completions.create(
            model="general", messages=ASK, tools=[WEATHER], stream=True
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == "Checking."
    calls = [d.tool_calls[0] for d in deltas if d.tool_calls]
    assert [c.index for c in calls] == [0, 1]
    assert all(c.id and c.type == "function" for c in calls)
    assert [json.loads(c.function.arguments)["city"] for c in calls] == [
        "Paris",
        "Oslo",
    ]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_the_clients_tool_results_reach_ollama_in_its_format(client, ollama):
    messages = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_7",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"city":"Paris"}',
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_7", "content": "18 °C, sunny"},
    ]
    completion = client.chat.completions.create(
        model="general", messages=messages, tools=[WEATHER]
    )
    assert completion.choices[0].finish_reason == "stop"
    sent = ollama.requests[-1]["messages"]
    assert sent[0]["role"] == "system"
    assert sent[2:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
            ],
        },
        {"role": "tool", "content": "18 °C, sunny", "tool_name": "get_weather"},
    ]


def test_tool_choice_none_offers_ollama_no_tools(client, ollama):
    client.chat.completions.create(
        model="general", messages=ASK, tools=[WEATHER], tool_choice="none"
    )
    assert "tools" not in ollama.requests[-1]


def test_the_agents_own_tools_are_never_offered_on_v1(client, ollama):
    client.chat.completions.create(model="helper", messages=ASK)
    assert "tools" not in ollama.requests[-1]
    client.chat.completions.create(model="helper", messages=ASK, tools=[WEATHER])
    assert ollama.requests[-1]["tools"] == [WEATHER]


def test_with_an_openai_compatible_server_everything_passes_as_it_is(
    openai_client, fake_openai
):
    fake_openai.behaviour.script = [Step(calls=[CALL])]
    completion = openai_client.chat.completions.create(
        model="general",
        messages=ASK,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
    )
    [call] = completion.choices[0].message.tool_calls
    assert (call.id, call.function.arguments) == ("call_fake0", '{"city": "Paris"}')
    sent = fake_openai.requests[-1]
    assert sent["tools"] == [WEATHER]
    assert sent["tool_choice"] == {
        "type": "function",
        "function": {"name": "get_weather"},
    }
    assert sent["parallel_tool_calls"] is False
    follow_up = [
        *ASK,
        completion.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18 °C"},
    ]
    openai_client.chat.completions.create(
        model="general", messages=follow_up, tools=[WEATHER]
    )
    assert fake_openai.requests[-1]["messages"][1:] == [
        ASK[0],
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_fake0",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"city": "Paris"}',
                    },
                }
            ],
        },
        {"role": "tool", "content": "18 °C", "tool_call_id": "call_fake0"},
    ]


def test_streamed_fragments_from_an_openai_server_arrive_whole(
    openai_client, fake_openai
):
    fake_openai.behaviour.script = [Step(calls=[CALL])]
    chunks = list(
        openai_client.chat.completions.create(
            model="general", messages=ASK, tools=[WEATHER], stream=True
        )
    )
    calls = [
        c.choices[0].delta.tool_calls[0]
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    ]
    assert len(calls) == 1
    assert calls[0].function.arguments == '{"city": "Paris"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"tools": [{"type": "retrieval"}]}, "tools.0.type"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools.0.function.name"),
        (
            {"tools": [{"type": "function", "function": {"name": "a b"}}]},
            "tools.0.function.name",
        ),
        ({"tools": [WEATHER] * 65}, "tools"),
        ({"tool_choice": "always"}, "tool_choice"),
        ({"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": "x",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{}"},
                            }
                        ],
                    }
                ]
            },
            "messages.0.role",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": "x",
                        "tool_calls": [{"id": "c", "function": {"name": "f"}}],
                    }
                ]
            },
            "messages.0.tool_calls.0.function.arguments",
        ),
    ],
)
def test_bad_tool_fields_are_400_naming_the_param(app, ollama, overrides, param):
    body = {"model": "general", "messages": ASK, **overrides}
    with (
        in_process_client(app) as client,
        pytest.raises(openai.BadRequestError) as caught,
    ):
        client.chat.completions.create(**body)
    assert caught.value.param == param


def test_tool_call_answers_match_the_document(start_server, ollama, tool_env):
    server = start_server(**tool_env)
    document = Document(server)
    body = {"model": "general", "messages": ASK, "tools": [WEATHER]}
    ollama.behaviour.script = [Step(calls=[CALL])]
    completion = requests.post(
        server.url + "/v1/chat/completions", json=body, timeout=10
    ).json()
    document.conforms("ChatCompletionReply", completion)
    assert completion["choices"][0]["message"]["content"] is None
    ollama.behaviour.script = [Step(text=["Hm."], calls=[CALL, CALL])]
    answer = requests.post(
        server.url + "/v1/chat/completions",
        json={**body, "stream": True, "stream_options": {"include_usage": True}},
        timeout=10,
    )
    chunks = [
        json.loads(line[6:])
        for line in answer.text.splitlines()
        if line.startswith("data: {")
    ]
    assert any(
        c["choices"] and "tool_calls" in c["choices"][0]["delta"] for c in chunks
    )
    for chunk in chunks:
        document.conforms("ChatCompletionChunk", chunk)


def test_the_docs_example_of_a_clients_tool_round_trip(client, ollama):
    """docs/api.md's example, as written: the pydantic message goes back as is."""
    ollama.behaviour.script = [Step(calls=[CALL]), Step(text=["Sunny, 18 °C."])]
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    reply = client.chat.completions.create(
        model="general", messages=messages, tools=[WEATHER]
    )
    message = reply.choices[0].message
    assert message.tool_calls
    call = message.tool_calls[0]
    messages += [
        message,
        {"role": "tool", "tool_call_id": call.id, "content": "18 °C, sunny"},
    ]
    reply = client.chat.completions.create(
        model="general", messages=messages, tools=[WEATHER]
    )
    assert reply.choices[0].message.content == "Sunny, 18 °C."
    assert ollama.requests[-1]["messages"][-1] == {
        "role": "tool",
        "content": "18 °C, sunny",
        "tool_name": "get_weather",
    }
