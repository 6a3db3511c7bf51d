"""GET /v1/models: the agents, as OpenAI's model list (a model is an agent)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from piagent.errors import UnknownModel
from piagent.web.context import services

bp = Blueprint("openai_models", __name__)


def _model(name: str) -> dict[str, str | int]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "piagent"}


@bp.get("/v1/models")
def models() -> dict[str, Any]:
    names = services().chat.agent_names()
    return {"object": "list", "data": [_model(name) for name in names]}


@bp.get("/v1/models/<path:name>")
def model(name: str) -> dict[str, str | int]:
    names = services().chat.agent_names()
    if name not in names:
        raise UnknownModel(f"The model {name!r} does not exist")
    return _model(name)
