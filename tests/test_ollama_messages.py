"""Ollama messages as the providers take them (OpenAI's format), and the wire's
small pieces: which call a tool result answers, ids that stay the same from
request to request, Go's timestamps."""

from __future__ import annotations

import json
import re

from piagent.events import Tokens
from piagent.web.ollama_wire import created_at, ndjson_frames
from piagent.web.views.ollama_chat import openai_messages


def call(function: str, **arguments) -> dict:
    return {"id": None, "function": {"name": function, "arguments": arguments}}


def assistant(*calls: dict) -> dict:
    return {"role": "assistant", "content": "", "tool_calls": list(calls)}


def tool(content: str, **named) -> dict:
    return {"role": "tool", "content": content, **named}


def test_calls_get_ids_counted_in_the_conversation_and_arguments_as_text():
    converted = openai_messages(
        [
            {"role": "user", "content": "lights?"},
            assistant(call("turn_on", name="hall", area="up")),
            tool("ok"),
            assistant(call("clock")),
            tool("12:00"),
        ]
    )
    assert [m.get("tool_calls", [{}])[0].get("id") for m in converted[1::2]] == [
        "call_0",
        "call_1",
    ]
    arguments = converted[1]["tool_calls"][0]["function"]["arguments"]
    assert arguments == '{"name":"hall","area":"up"}'  # compact, in order
    assert [converted[2]["tool_call_id"], converted[4]["tool_call_id"]] == [
        "call_0",
        "call_1",
    ]
    assert (
        openai_messages(
            [{"role": "user", "content": "lights?"}, assistant(call("turn_on"))]
        )[1]["tool_calls"][0]["id"]
        == "call_0"
    )  # the same history, the same ids


def test_a_result_answers_the_call_of_its_name_else_the_next_open_one():
    converted = openai_messages(
        [
            assistant(call("a"), call("b"), call("a")),
            tool("B", tool_name="b"),
            tool("first open"),
            tool("A", tool_name="a"),
        ]
    )
    assert [m["tool_call_id"] for m in converted[1:]] == ["call_1", "call_0", "call_2"]


def test_a_result_naming_its_call_id_answers_that_call():
    kept = {"id": "call_x", "function": {"name": "a", "arguments": {}}}
    converted = openai_messages([assistant(kept), tool("x", tool_call_id="call_x")])
    assert converted[1]["tool_call_id"] == "call_x"


def test_a_result_that_answers_no_call_keeps_an_id_of_its_own():
    converted = openai_messages(
        [{"role": "user", "content": "hi"}, tool("orphan", tool_name="gone")]
    )
    assert converted[1] == {
        "role": "tool",
        "content": "orphan",
        "tool_call_id": "call_0",
    }


def test_created_at_is_gos_rfc3339_nano_in_utc():
    stamp = created_at()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", stamp)
    assert not re.search(r"\.\d*0Z$", stamp)  # Go cuts trailing zeros


def test_a_stream_that_fails_unexpectedly_still_ends_with_an_error_line():
    def events():
        yield Tokens(["a"])
        raise RuntimeError("a bug")

    lines = b"".join(ndjson_frames("general:latest")(events())).splitlines()
    assert json.loads(lines[0])["message"] == {"role": "assistant", "content": "a"}
    assert json.loads(lines[-1]) == {"error": "internal server error"}
