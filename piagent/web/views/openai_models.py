"""GET /v1/models: the agents, as OpenAI's model list (a model is an agent)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from piagent.errors import UnknownModel
from piagent.web.apidoc import Reply, operation
from piagent.web.context import services
from piagent.web.reply_schemas import OpenAIModelListSchema, OpenAIModelSchema

bp = Blueprint("openai_models", __name__)


def _model(name: str) -> dict[str, str | int]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "piagent"}


@bp.get("/v1/models")
@operation(tag="openai", replies={200: Reply("The agents.", OpenAIModelListSchema)})
def models() -> dict[str, Any]:
    """The agents, as OpenAI's model list (a model is an agent)."""
    names = services().chat.agent_names()
    return {"object": "list", "data": [_model(name) for name in names]}


@bp.get("/v1/models/<path:name>")
@operation(
    tag="openai",
    replies={200: Reply("The agent, as a model.", OpenAIModelSchema)},
    errors=(404,),
)
def model(name: str) -> dict[str, str | int]:
    """One agent as an OpenAI model; 404 model_not_found for any other name."""
    names = services().chat.agent_names()
    if name not in names:
        raise UnknownModel(f"The model {name!r} does not exist")
    return _model(name)
