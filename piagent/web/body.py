"""Reading a request body as one bounded JSON object."""

from __future__ import annotations

import json
from typing import Any

from flask import request
from gunicorn.http.errors import ParseException

from piagent.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType


def read_json_object(limit: int, any_media_type: bool = False) -> dict[str, Any]:
    """The body as a dict, or the 4xx that says what is wrong with it.

    `any_media_type` reads JSON whatever the Content-Type says, as Ollama
    does (its documented curl examples send none).

    The limit is enforced on the bytes read, not only on Content-Length: a
    chunked body has none, and Flask would silently cut it short instead.
    """
    too_large = PayloadTooLarge(f"request body is larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    if not any_media_type and request.mimetype != "application/json":
        raise UnsupportedMediaType("Content-Type must be application/json")
    try:
        raw = request.stream.read(limit + 1)
    except (ParseException, OSError, ValueError):
        # gunicorn raises its HTTP parse errors (a bad chunk size, a body
        # shorter than its Content-Length) from inside the read.
        raise BadRequest("request body could not be read (broken framing)") from None
    if len(raw) > limit:
        raise too_large
    if request.content_length is not None and len(raw) < request.content_length:
        # The client closed early: a cut body may still parse, but is not what
        # it meant to send.
        raise BadRequest(
            f"request body ended after {len(raw)} of its "
            f"{request.content_length} bytes (Content-Length)"
        )
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BadRequest("request body must be a JSON object")
    if not _encodable(payload):
        # Python's json accepts "\ud800" alone (and UTF-16 bodies with lone
        # surrogates); nothing after it (a model, a UTF-8 encoder, a log line)
        # can take the half character that decodes to. A few µs a request.
        raise BadRequest(
            "request body is not valid Unicode: it escapes a lone surrogate (\\udXXX)"
        )
    return payload


def _encodable(payload: dict[str, Any]) -> bool:
    try:
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
