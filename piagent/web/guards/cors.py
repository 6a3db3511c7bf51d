"""CORS for browser pages on other origins, only when CORS_ORIGINS names some."""

from __future__ import annotations

import re

from flask import Flask

from piagent.settings import Settings, comma_list
from piagent.web.guards.origin import browser_form, parse_origin

# Headers browser code may send, and may read beyond the always-readable ones:
# the conversation id of a stream, and when to retry after a 429 or 503.
ALLOW_HEADERS = ["Authorization", "Content-Type", "X-API-Key", "X-Request-Id"]
EXPOSE_HEADERS = [
    "X-Conversation-Id",
    "X-Request-Id",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
]
PREFLIGHT_CACHE_SECONDS = 600


def install_cors(app: Flask, settings: Settings) -> None:
    """Answer allowed origins (and their preflights); others get no CORS header
    at all, so their browsers refuse to hand the reply to the page.

    No cookies are involved (keys travel in headers the page sets itself), so
    credentials stay off and `*` is safe to allow when keys are required.
    """
    listed = comma_list(settings.cors_origins)
    if not listed:
        return
    # Each origin as a browser writes it (so the Origin check and CORS agree
    # on what is listed), as an exact pattern: flask-cors takes a string with
    # `[` or `.`-like characters for a regex matched at its start only, which
    # would turn an IPv6 origin into a character class.
    parsed = [parse_origin(origin) for origin in listed if origin != "*"]
    origins = [
        re.compile(re.escape(browser_form(origin)) + r"\Z", re.IGNORECASE)
        for origin in parsed
        if origin is not None
    ]
    from flask_cors import CORS  # only when used: nothing to load for no CORS

    CORS(
        app,
        origins="*" if "*" in listed else origins,
        allow_headers=ALLOW_HEADERS,
        expose_headers=EXPOSE_HEADERS,
        methods=["GET", "POST", "DELETE", "OPTIONS"],
        max_age=PREFLIGHT_CACHE_SECONDS,
        supports_credentials=False,
    )
