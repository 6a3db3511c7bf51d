"""Home Assistant's Ollama integration, replayed: the request its entity.py sends
(keep_alive -1, options.num_ctx 8192, think, its tools, a history with a tool
call and its result) through the `ollama` client, and what reaches Ollama."""

from __future__ import annotations

import json

from ollama import Client, Message

from tests.support.fake_ollama import Step

HA_SYSTEM = "You are a voice assistant for Home Assistant. Answer briefly."
TURN_ON = {
    "type": "function",
    "function": {
        "name": "HassTurnOn",
        "parameters": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "area": {"type": "string"},
                "domain": {"type": "array", "items": {"type": "string"}},
            },
            "required": [],
        },
        "description": "Turns on/opens/presses a device or entity",
    },
}
GET_TIME = {
    "type": "function",
    "function": {
        "name": "GetDateTime",
        "parameters": {"type": "object", "properties": {}, "required": []},
        "description": "Provides the current date and time.",
    },
}
ARGUMENTS = {"name": "kitchen light", "domain": ["light"]}


def history() -> list[Message]:
    """As entity.py's _convert_content builds it: the tool result has no
    tool_name and its content is HA's JSON of data and error."""
    return [
        Message(role="system", content=HA_SYSTEM),
        Message(role="user", content="Turn on the kitchen light"),
        Message(
            role="assistant",
            content="",
            thinking=None,
            tool_calls=[
                Message.ToolCall(
                    function=Message.ToolCall.Function(
                        name="HassTurnOn", arguments=ARGUMENTS
                    )
                )
            ],
        ),
        Message(
            role="tool",
            content=json.dumps(
                {"data": {"success": [{"name": "Kitchen light"}]}, "error": None}
            ),
        ),
    ]


def ha_chat(server, **changes):
    """entity.py's call: stream=True, keep_alive -1, options num_ctx, think."""
    request = {
        "model": "general:latest",
        "messages": history(),
        "tools": [TURN_ON, GET_TIME],
        "stream": True,
        "keep_alive": -1,
        "options": {"num_ctx": 8192},
        "think": False,
        "format": None,
        **changes,
    }
    with Client(host=server.url + "/ollama") as client:
        return list(client.chat(**request))


def test_home_assistants_request_reaches_ollama_pinned_and_in_order(server, ollama):
    parts = ha_chat(server)
    assert parts[-1].done and "".join(p.message.content for p in parts)
    sent = ollama.requests[-1]
    assert sent["options"]["num_ctx"] == 2048  # CTX_TOKENS, not HA's 8192
    assert sent["keep_alive"] == "5m"  # OLLAMA_KEEP_ALIVE, not HA's -1
    assert sent["think"] is False and "format" not in sent
    assert sent["tools"] == [TURN_ON, GET_TIME]
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["system", "system", "user", "assistant", "tool"]
    assert sent["messages"][0]["content"] != HA_SYSTEM  # the agent's prompt first
    assert sent["messages"][1]["content"] == HA_SYSTEM
    [call] = sent["messages"][3]["tool_calls"]
    assert call["function"] == {"name": "HassTurnOn", "arguments": ARGUMENTS}
    assert list(call["function"]["arguments"]) == ["name", "domain"]  # key order
    # HA names no tool: the result answers the call before it.
    assert sent["messages"][4]["tool_name"] == "HassTurnOn"


def test_clients_may_choose_num_ctx_and_keep_alive_when_allowed(start_server, ollama):
    server = start_server(OLLAMA_API_CLIENT_LOAD_OPTIONS="true")
    ha_chat(server)
    sent = ollama.requests[-1]
    assert sent["options"]["num_ctx"] == 8192 and sent["keep_alive"] == -1


def test_home_assistant_reads_the_tool_calls_as_it_expects(server, ollama):
    """entity.py's _transform_stream reads message.tool_calls' name and
    arguments (a dict) from a line, and the content of every line."""
    ollama.behaviour.script = [
        Step(calls=[{"name": "GetDateTime", "arguments": {}}]),
    ]
    parts = ha_chat(server, messages=history()[:2])
    calls = [
        (c["function"]["name"], dict(c["function"]["arguments"]))
        for p in parts
        if (found := p["message"].get("tool_calls")) is not None
        for c in found
    ]
    assert calls == [("GetDateTime", {})]
    assert all(p["message"].get("content") is not None for p in parts)
    assert parts[-1].done_reason == "stop"


def test_tool_names_outside_openais_rule_pass_as_ollama_lets_them(server, ollama):
    """Ollama takes any function name (an MCP server's tools may have dots);
    /v1 keeps OpenAI's stricter rule."""
    script = {
        "type": "function",
        "function": {
            "name": "script.good_morning",
            "parameters": {"type": "object", "properties": {}},
        },
    }
    ha_chat(server, tools=[TURN_ON, script])
    assert ollama.requests[-1]["tools"] == [TURN_ON, script]


def test_a_long_tool_name_offered_is_taken_back_in_the_history(server, ollama):
    """The offer, the call in the history and the result's tool_name share
    one limit: a name that worked once keeps working on the next turn."""
    name = "mcp_server." + "x" * 90
    tool = {"type": "function", "function": {"name": name, "parameters": {}}}
    call = Message.ToolCall(
        function=Message.ToolCall.Function(name=name, arguments={"a": 1})
    )
    messages = [
        Message(role="user", content="go"),
        Message(role="assistant", content="", tool_calls=[call]),
        Message(role="tool", content="done", tool_name=name),
    ]
    parts = ha_chat(server, tools=[tool], messages=messages)
    assert parts[-1].done
    sent = ollama.requests[-1]["messages"]
    assert sent[2]["tool_calls"][0]["function"]["name"] == name
    assert sent[3]["tool_name"] == name
