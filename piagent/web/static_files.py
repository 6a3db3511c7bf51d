"""Files shipped in the package (the chat page, the API docs), sent with their
caching and security headers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask import Response, send_from_directory

STATIC = Path(__file__).resolve().parent / "static"

# No inline script or style, nothing from another origin; the page talks to
# piagent only. data: images cover the empty favicon.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
# Said here rather than guessed: guessing reads the system's mime.types on
# first use, 0.4 MB of RSS for the few kinds of file shipped here.
MIME_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".md": "text/markdown",
    "": "text/plain",  # LICENSE, NOTICE; werkzeug adds the charset to text/*
}
OTHER = "application/octet-stream"


def send_static(directory: Path, name: str) -> Response:
    """One file, read from disk on each request (nothing is kept in memory).

    `Cache-Control: no-cache` with an ETag: the browser keeps its copy but
    asks each time, and a 304 answers when the file is unchanged, so an
    upgraded piagent shows its new page at once. A missing file, or a name
    that leaves `directory`, is the usual JSON 404.
    """
    response = send_from_directory(
        directory,
        name,
        mimetype=MIME_TYPES.get(Path(name).suffix, OTHER),
        max_age=None,
        conditional=True,
    )
    response.headers["Cache-Control"] = "no-cache"
    return response


def security_headers(csp: str) -> Callable[[Response], Response]:
    """An after_request hook: the CSP and the usual hardening headers."""

    def add(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = csp
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    return add
