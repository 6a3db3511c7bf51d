"""Ollama's metadata routes under /ollama: the agents as Ollama's models.

Each agent is a model `<agent>:latest`. Its details (family, parameter size,
quantization), size, digest and modification time, and /api/show's
`model_info` and `capabilities`, are the model server's own for the agent's
model when it is Ollama (piagent.catalog asks it at most once per answer every
few seconds); its digest is piagent's own, a hash of the agent's model and
prompt. Nothing is downloaded through piagent: pull answers `success` for an
agent, and Ollama's other management routes answer 501.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify

from piagent.agents import Agent
from piagent.errors import PiagentError
from piagent.settings import Settings
from piagent.web.apidoc import Reply, event_stream, operation
from piagent.web.body import read_json_object
from piagent.web.context import services
from piagent.web.guards.auth import public
from piagent.web.ollama_replies import (
    OllamaModelListSchema,
    OllamaShowSchema,
    OllamaStatusSchema,
    OllamaVersionSchema,
)
from piagent.web.ollama_schemas import OllamaModelRequestSchema
from piagent.web.schemas import load_or_422
from piagent.web.streams import CONTENT_TYPES, NDJSON
from piagent.web.views.ollama_chat import named_agent

bp = Blueprint("ollama_api", __name__)

# The Ollama version piagent's API follows (its fields, thinking, tool calls).
VERSION = "0.12.0"
# What a model without a model server's description is said to be.
NO_DETAILS = {
    "parent_model": "",
    "format": "",
    "family": "",
    "families": None,
    "parameter_size": "",
    "quantization_level": "",
}
# When the model server cannot say: an OpenAI-compatible server takes tools.
CAPABILITIES = ["completion", "tools"]
STARTED = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class NotImplementedByPiagent(PiagentError):
    """An Ollama management route piagent does not offer."""

    status = 501


def enabled(settings: Settings) -> bool:
    return settings.ollama_api


def _agents() -> list[Agent]:
    chat = services().chat
    return [agent for name in chat.agent_names() if (agent := chat.agent(name))]


def _entry(agent: Agent, upstream: dict[str, Any] | None) -> dict[str, Any]:
    name = f"{agent.name}:latest"
    found = upstream or {}
    identity = f"{agent.name}\n{agent.model}\n{agent.system_prompt}".encode()
    return {
        "name": name,
        "model": name,
        "modified_at": found.get("modified_at") or STARTED,
        "size": found.get("size") or 0,
        "digest": hashlib.sha256(identity).hexdigest(),
        "details": found.get("details") or dict(NO_DETAILS),
    }


def _upstream(listed: dict[str, dict[str, Any]], model: str) -> dict[str, Any] | None:
    """A model's entry in the model server's list (Ollama adds `:latest`)."""
    return listed.get(model) or listed.get(f"{model}:latest")


@bp.get("/ollama/", strict_slashes=False)
@public
@operation(tag="ollama", replies={200: Reply("`Ollama is running` (text/plain).")})
def root() -> Response:
    """Ollama's greeting: clients check the server with it."""
    return Response("Ollama is running", content_type="text/plain; charset=utf-8")


@bp.get("/ollama/api/version")
@operation(tag="ollama", replies={200: Reply("The version.", OllamaVersionSchema)})
def version() -> dict[str, str]:
    """The Ollama version whose API piagent speaks."""
    return {"version": VERSION}


@bp.get("/ollama/api/tags")
@operation(tag="ollama", replies={200: Reply("The agents.", OllamaModelListSchema)})
def tags() -> dict[str, Any]:
    """Each agent as a model `<agent>:latest`, with its model's details."""
    listed = services().catalog.tags()
    return {"models": [_entry(a, _upstream(listed, a.model)) for a in _agents()]}


@bp.get("/ollama/api/ps")
@operation(
    tag="ollama", replies={200: Reply("The loaded agents.", OllamaModelListSchema)}
)
def ps() -> dict[str, Any]:
    """The agents whose model the model server has in memory (Ollama only)."""
    catalog = services().catalog
    loaded, listed = catalog.loaded(), catalog.tags()
    models = []
    for agent in _agents():
        running = _upstream(loaded, agent.model)
        if running is not None:
            entry = _entry(agent, _upstream(listed, agent.model) or running)
            entry["expires_at"] = running.get("expires_at") or STARTED
            entry["size_vram"] = running.get("size_vram") or 0
            models.append(entry)
    return {"models": models}


def _named_agent() -> tuple[Agent, dict[str, Any]]:
    found = services()
    fields = load_or_422(
        OllamaModelRequestSchema(),
        read_json_object(found.settings.max_body_bytes, True),
    )
    return named_agent(fields["model"] or fields["name"]), fields


@bp.post("/ollama/api/show")
@operation(
    tag="ollama",
    body=OllamaModelRequestSchema,
    replies={200: Reply("The agent's model.", OllamaShowSchema)},
    errors=(404,),
)
def show() -> dict[str, Any]:
    """An agent's model: details, model_info and capabilities from the model
    server; `system` is the agent's system prompt."""
    agent, _ = _named_agent()
    shown = services().catalog.show(agent.model)
    return {
        "modelfile": f"# piagent agent {agent.name}\nFROM {agent.model}\n",
        "parameters": shown.get("parameters") or "",
        "template": shown.get("template") or "",
        "system": agent.system_prompt,
        "details": shown.get("details") or dict(NO_DETAILS),
        "model_info": shown.get("model_info") or {},
        "capabilities": shown.get("capabilities") or list(CAPABILITIES),
        "modified_at": shown.get("modified_at") or STARTED,
    }


@bp.post("/ollama/api/pull")
@operation(
    tag="ollama",
    body=OllamaModelRequestSchema,
    replies={
        200: Reply(
            '`{"status": "success"}`: nothing is downloaded through piagent. By '
            "default one NDJSON line, with `stream: false` one object.",
            OllamaStatusSchema,
            content={NDJSON: event_stream("One line.", ("OllamaStatus",))},
        )
    },
    errors=(404,),
)
def pull() -> Response:
    """Success for an agent, 404 for any other name: piagent pulls nothing."""
    _, fields = _named_agent()
    if fields["stream"] is False:
        return jsonify(status="success")

    def lines() -> Iterator[bytes]:
        yield b'{"status":"success"}\n'

    return Response(lines(), content_type=CONTENT_TYPES[NDJSON])


def not_implemented(**path: str) -> Response:
    """An Ollama management route piagent does not offer: 501."""
    raise NotImplementedByPiagent(
        "piagent serves agents, not Ollama's model management or raw generation: "
        "use /ollama/api/chat, or Ollama itself"
    )


# Documented once, registered under each of Ollama's routes piagent lacks.
operation(tag="ollama", replies={}, errors=(501,))(not_implemented)
UNSUPPORTED = (
    ("generate", "/ollama/api/generate", "POST"),
    ("embed", "/ollama/api/embed", "POST"),
    ("embeddings", "/ollama/api/embeddings", "POST"),
    ("create", "/ollama/api/create", "POST"),
    ("copy", "/ollama/api/copy", "POST"),
    ("delete", "/ollama/api/delete", "DELETE"),
    ("push", "/ollama/api/push", "POST"),
    ("blobs", "/ollama/api/blobs/<digest>", "POST"),
)
for _name, _path, _method in UNSUPPORTED:
    bp.add_url_rule(_path, f"unsupported_{_name}", not_implemented, methods=[_method])
