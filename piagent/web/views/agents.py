"""The agents a client may name in /chat."""

from flask import Blueprint

from piagent.web.context import services

bp = Blueprint("agents", __name__)


@bp.get("/agents")
def agents() -> dict[str, list[str]]:
    return {"agents": services().chat.agent_names()}
