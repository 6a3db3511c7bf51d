"""POST /ollama/api/chat: Ollama's chat API, so Home Assistant and Ollama's clients
can use piagent's agents.

Stateless, as /v1 is: `model` names an agent (`general` or `general:latest`),
whose system prompt goes first, then the client's whole history as sent
(nothing is read from or written to memory). The client's `tools`, its
messages' `tool_calls` and `role: "tool"` results pass to the model server,
converted to the providers' OpenAI format here and back to Ollama's on the
way out; `format`, `think` and sampling options pass too, while `num_ctx` and
`keep_alive` are pinned to CTX_TOKENS and OLLAMA_KEEP_ALIVE unless
OLLAMA_API_CLIENT_LOAD_OPTIONS lets clients choose. The lines are framed in
piagent.web.ollama_wire; errors come in Ollama's `{"error"}` shape.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from piagent.agents import Agent
from piagent.errors import UnknownModel
from piagent.providers import (
    ChatMessage,
    Options,
    ToolCall,
    ToolOffer,
    arguments_text,
)
from piagent.settings import Settings
from piagent.web.apidoc import Reply, event_stream, operation
from piagent.web.body import read_json_object
from piagent.web.client import client_probe
from piagent.web.context import services
from piagent.web.ollama_replies import OllamaChatReplySchema
from piagent.web.ollama_wire import created_at, message, ndjson_frames, reply_body
from piagent.web.schemas import load_or_422
from piagent.web.streams import CONTENT_TYPES, NDJSON, STREAM_HEADERS

bp = Blueprint("ollama_chat", __name__)


def enabled(settings: Settings) -> bool:
    return settings.ollama_api


def named_agent(model: str) -> Agent:
    """The agent a model name stands for: `general:latest` is `general`;
    raises UnknownModel with Ollama's message for any other name."""
    agent = services().chat.agent(model.removesuffix(":latest"))
    if agent is None:
        raise UnknownModel(f'model "{model}" not found')
    return agent


@bp.post("/ollama/api/chat")
@operation(
    tag="ollama",
    body=lambda found: found.ollama_chat_schema,
    replies={
        200: Reply(
            "With `stream: false` one chat response; by default NDJSON lines "
            "(application/x-ndjson), the last with `done: true`.",
            OllamaChatReplySchema,
            content={
                NDJSON: event_stream(
                    "One OllamaChatResponse a line, the last with `done: true` and "
                    'the counts; a failure after the first line is `{"error": ...}` '
                    "and ends the body.",
                    ("OllamaChatResponse", "OllamaError"),
                )
            },
        )
    },
    errors=(404, 502, 503, 504),
)
def chat() -> Response:
    """Ollama's chat: `model` names an agent, `messages` are the whole
    history (stateless)."""
    found = services()
    payload = read_json_object(found.settings.max_body_bytes, any_media_type=True)
    fields = load_or_422(found.ollama_chat_schema, payload)
    model = fields["model"]
    name = named_agent(model).name
    if not fields["messages"]:
        # As Ollama: no messages only loads the model; piagent's warm-up and
        # keep-alive see to that, so the answer is at once.
        body = {"model": model, "created_at": created_at(), "message": message()}
        return jsonify(**body, done_reason="load", done=True)
    messages = openai_messages(fields["messages"])
    tools = ToolOffer(tuple(fields["tools"])) if fields["tools"] else None
    options = request_options(fields, found.settings)
    turn = found.chat.start_stateless(
        name, messages, options, f"ollama-{uuid.uuid4().hex}", tools
    )
    g.turn = turn  # read by the request log when the response is closed
    present = client_probe(request.environ)
    if fields["stream"] is False:
        reply = found.chat.reply(turn, present)
        return jsonify(reply_body(model, reply.text, reply.thinking, turn.stats))
    events = found.chat.stream(turn, present, pings=False)
    return Response(
        events.framed(ndjson_frames(model)),
        content_type=CONTENT_TYPES[NDJSON],
        headers=STREAM_HEADERS,
    )


def request_options(fields: dict[str, Any], settings: Settings) -> Options:
    """The client's options as the providers take them. `num_predict` is the
    reply's length (lowered to MAX_TOKENS later; -1 and -2, Ollama's
    "unbounded", mean MAX_TOKENS); num_ctx and keep_alive only when clients
    may choose them."""
    sent = fields["options"] or {}
    predict = sent.get("num_predict")
    choose = settings.ollama_api_client_load_options
    return Options(
        temperature=sent.get("temperature"),
        max_tokens=predict if predict is not None and predict > 0 else None,
        format=fields["format"],
        think=fields["think"],
        num_ctx=sent.get("num_ctx") if choose else None,
        keep_alive=fields["keep_alive"] if choose else None,
        top_p=sent.get("top_p"),
        top_k=sent.get("top_k"),
        seed=sent.get("seed"),
        stop=sent.get("stop"),
        stream_thinking=True,
    )


def openai_messages(sent: list[dict[str, Any]]) -> list[ChatMessage]:
    """Ollama messages in the providers' OpenAI format.

    A call without an id gets `call_<n>`, n counting the conversation's calls
    from 0, so the same history always gives the same ids. A tool result
    answers the call its `tool_call_id` names; else the first unanswered call
    of the assistant message before it named `tool_name`; else (Home
    Assistant sends no name) its first unanswered call. A result that
    matches no call keeps a generated id of its own.
    """
    converted: list[ChatMessage] = []
    open_calls: list[tuple[str, str]] = []  # (id, name) not yet answered
    count = 0
    for item in sent:
        role = item["role"]
        if role == "assistant" and item.get("tool_calls"):
            wire = []
            open_calls = []
            for call in item["tool_calls"]:
                call_id = call.get("id") or f"call_{count}"
                count += 1
                function = call["function"]
                open_calls.append((call_id, function["name"]))
                arguments = arguments_text(function["arguments"])
                wire.append(ToolCall(call_id, function["name"], arguments).wire())
            converted.append(
                {"role": "assistant", "content": item["content"], "tool_calls": wire}
            )
        elif role == "tool":
            call_id = _answered(item, open_calls)
            if call_id is None:
                call_id = f"call_{count}"
                count += 1
            converted.append(
                {"role": "tool", "content": item["content"], "tool_call_id": call_id}
            )
        else:
            if role == "user":
                open_calls = []
            converted.append({"role": role, "content": item["content"]})
    return converted


def _answered(item: dict[str, Any], open_calls: list[tuple[str, str]]) -> str | None:
    """The id of the open call a tool result answers (removed from the list)."""
    wanted_id, wanted_name = item.get("tool_call_id"), item.get("tool_name")
    for index, (call_id, name) in enumerate(open_calls):
        if wanted_id and call_id != wanted_id:
            continue
        if not wanted_id and wanted_name and name != wanted_name:
            continue
        del open_calls[index]
        return call_id
    return wanted_id
