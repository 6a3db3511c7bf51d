"""Liveness: answers without touching the model server."""

from flask import Blueprint

from piagent.web.guards.auth import public

bp = Blueprint("health", __name__)


@bp.get("/health")
@public
def health() -> dict[str, str]:
    return {"status": "ok"}
