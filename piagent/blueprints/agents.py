"""The agents a client may name in /chat."""

from flask import Blueprint, current_app

bp = Blueprint("agents", __name__)


@bp.get("/agents")
def agents() -> dict[str, list[str]]:
    return {"agents": current_app.extensions["piagent"].chat.agent_names()}
