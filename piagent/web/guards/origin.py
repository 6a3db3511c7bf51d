"""The Origin check: another site's page may not POST or DELETE here."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, request

from piagent.errors import ForeignOrigin
from piagent.settings import CORS_ORIGIN_PATTERN, Settings, comma_list

# Methods that change nothing; everything else (POST, DELETE) is checked.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]


def parse_origin(text: str) -> Origin | None:
    """(scheme, host, port) of `scheme://host[:port]`, the default port
    filled in; None for `null` or anything that is not such an origin."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.path or parts.query or parts.fragment or parts.username is not None:
        return None
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]


def browser_form(origin: Origin) -> str:
    """An origin as browsers send it: the default port left out, an IPv6
    address in brackets (so `https://ha.example:443` is `https://ha.example`)."""
    scheme, host, port = origin
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}" + ("" if port == DEFAULT_PORTS[scheme] else f":{port}")


def install_origin_check(app: Flask, settings: Settings) -> None:
    """Answer 403 to a POST or DELETE whose Origin is another site's.

    Browsers send Origin with every POST and DELETE, their own site's too;
    curl and scripts send none and pass. Allowed: this server's own origin
    (the request's scheme and Host: behind nginx gunicorn takes the scheme
    from a trusted proxy's X-Forwarded-Proto, and the shipped site passes
    the Host the browser sent, port included) and CORS_ORIGINS. A simple
    cross-site POST (a form, or text/plain) is sent without a preflight and
    would otherwise reach the model even though the page cannot read the
    answer. With CORS_ORIGINS=* every origin may call piagent: no check.
    """
    listed = comma_list(settings.cors_origins)
    if "*" in listed:
        return
    allowed = {parse_origin(origin) for origin in listed} - {None}

    @app.before_request
    def check_origin() -> None:
        sent = request.headers.get("Origin")
        if request.method in SAFE_METHODS or sent is None:
            return
        origin = parse_origin(sent)
        own = parse_origin(f"{request.scheme}://{request.host}")
        if origin is not None and (origin == own or origin in allowed):
            return
        shown = sent.strip()
        safe = shown == "null" or CORS_ORIGIN_PATTERN.fullmatch(shown)
        named = f"Origin {shown!r}" if safe else "this Origin"
        raise ForeignOrigin(
            f"{named} may not {request.method} here: it is neither "
            "this server's own origin nor in CORS_ORIGINS"
        )
