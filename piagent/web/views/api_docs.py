"""GET /openapi.json and /docs (API_DOCS=true): the API describes itself.

The document is built from the views' `apidoc.operation` records and the
marshmallow schemas by piagent.web.openapi, imported (with apispec) on the
first request for it and built once per app. /docs is Swagger UI, vendored
under static/vendor/swagger-ui (see VENDORED.md there). Both are public.
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app

from piagent.settings import Settings
from piagent.web.apidoc import Reply, operation
from piagent.web.guards.auth import public
from piagent.web.static_files import PAGE_CSP, STATIC, security_headers, send_static

DOCS = STATIC / "docs"
VIEWER = STATIC / "vendor" / "swagger-ui"
CACHE = "piagent.openapi"
HTML = {"text/html": {"schema": {"type": "string"}}}
FILE = {"*/*": {"schema": {"type": "string"}}}

bp = Blueprint("api_docs", __name__)
# The chat page's strict policy, unrelaxed: Swagger UI 5 sets its styles
# through the DOM (allowed), and its start is docs.js, not an inline script.
bp.after_request(security_headers(PAGE_CSP))


def enabled(settings: Settings) -> bool:
    return settings.api_docs


@bp.get("/openapi.json")
@public
@operation(
    tag="docs",
    replies={
        200: Reply(
            "This document.",
            content={"application/json": {"schema": {"type": "object"}}},
        )
    },
)
def openapi_document() -> Response:
    """The OpenAPI 3.1 document of this server, generated from its schemas."""
    body = current_app.extensions.get(CACHE)
    if body is None:
        from piagent.web.openapi import build_document

        body = json.dumps(build_document(current_app), ensure_ascii=False).encode()
        current_app.extensions[CACHE] = body
    return Response(body, content_type="application/json")


@bp.get("/docs")
@public
@operation(tag="docs", replies={200: Reply("Swagger UI.", content=HTML)})
def docs() -> Response:
    """The interactive API reference."""
    return send_static(DOCS, "index.html")


@bp.get("/docs/<name>")
@public
@operation(
    tag="docs",
    replies={
        200: Reply("A file of the reference.", content=FILE),
        304: Reply("Not modified: the ETag matched."),
    },
    errors=(404,),
)
def docs_file(name: str) -> Response:
    """The reference's own script and style, and Swagger UI's."""
    directory = DOCS if (DOCS / name).is_file() else VIEWER
    return send_static(directory, name)
