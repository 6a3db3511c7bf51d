"""Liveness: answers without touching the model server."""

from flask import Blueprint

from piagent.web.apidoc import Reply, operation
from piagent.web.guards.auth import public
from piagent.web.reply_schemas import HealthSchema

bp = Blueprint("health", __name__)


@bp.get("/health")
@public
@operation(tag="status", replies={200: Reply("Alive.", HealthSchema)})
def health() -> dict[str, str]:
    """Liveness: answers without asking the model server."""
    return {"status": "ok"}
