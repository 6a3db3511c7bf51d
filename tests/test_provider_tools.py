"""Tool calls at the providers: offered tools, calls read from a stream, the
messages of a tool exchange in each model server's format."""

from __future__ import annotations

import json

import pytest
import responses

from piagent.errors import ProviderFailed
from piagent.providers import OllamaProvider, OpenAIProvider, ToolOffer
from piagent.providers.ollama import ollama_messages
from piagent.providers.openai import CallAssembler
from tests.support.fake_ollama import Step
from tests.support.server import MODEL

CLOCK = {
    "type": "function",
    "function": {
        "name": "clock",
        "description": "the time",
        "parameters": {"type": "object", "properties": {}},
    },
}
ASK = [{"role": "user", "content": "what time is it?"}]
EXCHANGE = [
    {"role": "system", "content": "s"},
    {"role": "user", "content": "what is 6*7?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "calculator", "arguments": '{"expression":"6*7"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "clock", "arguments": "{}"},
            },
        ],
    },
    {"role": "tool", "content": '{"result": 42}', "tool_call_id": "call_1"},
    {"role": "tool", "content": '{"time": "12:00"}', "tool_call_id": "call_2"},
]


def ollama_provider(fake) -> OllamaProvider:
    return OllamaProvider(
        fake.url, timeout=5, connect_timeout=1, keep_alive="5m", options={}
    )


def openai_provider(fake) -> OpenAIProvider:
    return OpenAIProvider(
        fake.url + "/v1",
        api_key="",
        timeout=5,
        connect_timeout=1,
        temperature=0.7,
        max_tokens=100,
    )


def test_ollama_reads_the_calls_of_a_chunk_with_arguments_as_compact_json(ollama):
    ollama.behaviour.script = [
        Step(calls=[{"name": "calculator", "arguments": {"expression": "6*7", "a": 1}}])
    ]
    stream = ollama_provider(ollama).stream(MODEL, ASK, tools=ToolOffer((CLOCK,)))
    assert list(stream) == []
    [call] = stream.tool_calls
    assert (call.name, call.arguments) == ("calculator", '{"expression":"6*7","a":1}')
    assert call.id.startswith("call_")
    assert ollama.requests[-1]["tools"] == [CLOCK]


def test_ollama_keeps_the_id_it_is_given_and_text_before_calls(ollama):
    ollama.behaviour.script = [
        Step(text=["Let", " me"], calls=[{"name": "clock", "id": "c9"}])
    ]
    stream = ollama_provider(ollama).stream(MODEL, ASK, tools=ToolOffer((CLOCK,)))
    assert "".join(stream) == "Let me"
    assert [(c.id, c.name, c.arguments) for c in stream.tool_calls] == [
        ("c9", "clock", "{}")
    ]


def test_ollama_is_not_offered_tools_for_tool_choice_none(ollama):
    list(ollama_provider(ollama).stream(MODEL, ASK, tools=ToolOffer((CLOCK,), "none")))
    assert "tools" not in ollama.requests[-1]
    list(ollama_provider(ollama).stream(MODEL, ASK))
    assert "tools" not in ollama.requests[-1]


def test_ollama_gets_a_tool_exchange_in_its_own_format(ollama):
    list(ollama_provider(ollama).stream(MODEL, EXCHANGE))
    sent = ollama.requests[-1]["messages"]
    assert sent[2] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"function": {"name": "calculator", "arguments": {"expression": "6*7"}}},
            {"function": {"name": "clock", "arguments": {}}},
        ],
    }
    assert sent[3] == {
        "role": "tool",
        "content": '{"result": 42}',
        "tool_name": "calculator",
    }
    assert sent[4]["tool_name"] == "clock"


def test_ollama_messages_pass_plain_ones_as_they_are_and_bad_arguments_as_empty():
    plain = [{"role": "user", "content": "hi"}]
    assert ollama_messages(plain) == plain
    broken = [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "x", "function": {"name": "clock", "arguments": "not json"}}
            ],
        },
        {"role": "tool", "content": "r", "tool_call_id": "unknown"},
    ]
    assert ollama_messages(broken)[0]["tool_calls"][0]["function"]["arguments"] == {}
    assert "tool_name" not in ollama_messages(broken)[1]
    # The same messages give the same bytes every time: the prompt cache holds.
    assert json.dumps(ollama_messages(EXCHANGE)) == json.dumps(
        ollama_messages(EXCHANGE)
    )


@responses.activate
def test_ollama_tool_calls_that_are_not_a_list_are_a_malformed_line():
    line = {
        "model": MODEL,
        "created_at": "t",
        "message": {"role": "assistant", "content": "", "tool_calls": "clock"},
        "done": False,
    }
    responses.post(
        "http://ollama.test/api/chat",
        body=json.dumps(line) + "\n",
        content_type="application/x-ndjson",
    )
    provider = OllamaProvider(
        "http://ollama.test", timeout=5, connect_timeout=1, keep_alive="5m", options={}
    )
    with pytest.raises(ProviderFailed, match="malformed line"):
        provider.stream(MODEL, ASK)


def test_openai_assembles_streamed_fragments_and_passes_tool_options(fake_openai):
    fake_openai.behaviour.script = [
        Step(
            text=["Checking."],
            calls=[
                {"name": "calculator", "arguments": {"expression": "6*7"}},
                {"name": "clock", "arguments": {}, "id": "call_b"},
            ],
        )
    ]
    offer = ToolOffer((CLOCK,), "auto", False)
    stream = openai_provider(fake_openai).stream(MODEL, ASK, tools=offer)
    assert "".join(stream) == "Checking."
    assert [(c.id, c.name, c.arguments) for c in stream.tool_calls] == [
        ("call_fake0", "calculator", '{"expression": "6*7"}'),
        ("call_b", "clock", "{}"),
    ]
    assert stream.usage.done_reason == "tool_calls"
    sent = fake_openai.requests[-1]
    assert (sent["tools"], sent["tool_choice"], sent["parallel_tool_calls"]) == (
        [CLOCK],
        "auto",
        False,
    )


def test_openai_gets_a_tool_exchange_as_it_is(fake_openai):
    list(openai_provider(fake_openai).stream(MODEL, EXCHANGE))
    assert fake_openai.requests[-1]["messages"] == EXCHANGE
    assert "tools" not in fake_openai.requests[-1]


def test_call_assembler_handles_missing_indexes_and_reused_ones():
    calls = CallAssembler()
    assert calls.add([{"id": "a", "function": {"name": "clock", "arguments": "{"}}])
    assert calls.add([{"function": {"arguments": "}"}}])
    # Ollama's compatibility layer: every call at index 0, each its own id.
    assert calls.add(
        [{"index": 0, "id": "b", "function": {"name": "x", "arguments": "1"}}]
    )
    assert [(c.id, c.name, c.arguments) for c in calls.calls()] == [
        ("a", "clock", "{}"),
        ("b", "x", "1"),
    ]


@pytest.mark.parametrize(
    "deltas",
    [
        "clock",
        [{"index": "0"}],
        [{"function": "clock"}],
        [{"function": {"name": 5}}],
        ["x"],
    ],
)
def test_call_assembler_refuses_malformed_deltas(deltas):
    assert not CallAssembler().add(deltas)
