"""Readiness: Ollama answers and every agent's model is pulled (with several
model hosts: on at least one healthy host)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify

from piagent.errors import PiagentError
from piagent.providers.base import HostReport
from piagent.web.apidoc import Reply, operation
from piagent.web.context import Services, services
from piagent.web.reply_schemas import ReadySchema

log = logging.getLogger("piagent")

bp = Blueprint("ready", __name__)


@bp.get("/ready")
@operation(
    tag="status",
    replies={
        200: Reply(
            "Ready: the model server answers, every model is pulled (with "
            "several hosts: on some healthy host; `hosts` lists them).",
            ReadySchema,
        ),
        503: Reply("Not ready; `detail` says why.", ReadySchema),
    },
)
def ready() -> Response:
    """Readiness: 200 when /chat can work, else 503 with the reason.

    Never a 500. Each model is reported as pulled and loaded (warm: its first token will
    not wait for a load). Unlike /health this asks Ollama, so keep it off
    tight liveness loops.
    """
    found = services()
    try:
        readiness = found.provider.readiness(found.chat.models())
    except Exception as exc:  # a readiness probe must answer, whatever broke
        log.exception("readiness check failed")
        response = jsonify(
            status="not ready", detail=f"readiness check failed: {exc}", models={}
        )
        response.status_code = 503
        return response
    models = {
        name: {"pulled": state.pulled, "loaded": state.loaded}
        for name, state in readiness.models.items()
    }
    problems = [p for p in (readiness.problem, _shared_state(found)) if p]
    body: dict[str, Any] = {"status": "not ready" if problems else "ready"}
    if problems:
        body["detail"] = "; ".join(problems)
    body["models"] = models
    if readiness.hosts:
        body["hosts"] = [_host(report) for report in readiness.hosts]
    response = jsonify(body)
    response.status_code = 503 if problems else 200
    return response


def _shared_state(found: Services) -> str | None:
    """Why generation slots cannot be counted (STATE_BACKEND=redis), or None."""
    ping = getattr(found.slots, "ping", None)
    if ping is None:
        return None
    try:
        ping()
    except PiagentError as exc:
        return str(exc.detail)
    return None


def _host(report: HostReport) -> dict[str, Any]:
    host: dict[str, Any] = {
        "url": report.url,
        "state": "up" if report.up else "down",
        "models": report.models,
    }
    if report.detail is not None:
        host["detail"] = report.detail
    return host
