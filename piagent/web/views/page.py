"""GET / and /static/...: the chat page, a few static files (WEB_UI=true).

The page is plain HTML, CSS and ES modules from piagent/web/static/page/, no
build step; it uses only piagent's own API (/agents, /chat as SSE,
/conversations). Public: the page must load before it can ask for a key.
"""

from __future__ import annotations

from flask import Blueprint, Response

from piagent.settings import Settings
from piagent.web.apidoc import Reply, operation
from piagent.web.guards.auth import public
from piagent.web.static_files import PAGE_CSP, STATIC, security_headers, send_static

PAGE = STATIC / "page"

bp = Blueprint("page", __name__)
bp.after_request(security_headers(PAGE_CSP))


def enabled(settings: Settings) -> bool:
    return settings.web_ui


HTML = {"text/html": {"schema": {"type": "string"}}}
FILE = {"*/*": {"schema": {"type": "string"}}}
NOT_MODIFIED = Reply("Not modified: the ETag matched.")


@bp.get("/")
@public
@operation(
    tag="page", replies={200: Reply("The page.", content=HTML), 304: NOT_MODIFIED}
)
def index() -> Response:
    """The chat page."""
    return send_static(PAGE, "index.html")


@bp.get("/static/<path:name>")
@public
@operation(
    tag="page",
    replies={200: Reply("The file.", content=FILE), 304: NOT_MODIFIED},
    errors=(404,),
)
def static_file(name: str) -> Response:
    """The page's stylesheet and scripts."""
    return send_static(PAGE, name)
