"""The agents a client may name in /chat."""

from flask import Blueprint

from piagent.web.apidoc import Reply, operation
from piagent.web.context import services
from piagent.web.reply_schemas import AgentsSchema

bp = Blueprint("agents", __name__)


@bp.get("/agents")
@operation(tag="chat", replies={200: Reply("The agents' names.", AgentsSchema)})
def agents() -> dict[str, list[str]]:
    """The agents a client may name in /chat."""
    return {"agents": services().chat.agent_names()}
