"""Every error piagent answers with, and the one place each becomes a status and JSON.

PiagentError                       500  (never raised as such)
 ├── RequestError                        the caller can fix it
 │    ├── BadRequest                400  body is not a JSON object
 │    ├── Unauthorized              401  no API key, or a wrong one
 │    ├── PayloadTooLarge           413  body over MAX_BODY_BYTES
 │    ├── UnsupportedMediaType      415  not application/json
 │    ├── ConversationNotFound      404  unknown or expired conversation id
 │    ├── InvalidFields             422  [{"loc": [...], "msg": ...}, ...]
 │    └── ClientGone                499  left while waiting (nobody reads it)
 ├── MemoryUnavailable             503  the memory store cannot be reached
 ├── QueueFull                      503  too many generations waiting; Retry-After
 └── ProviderError                       the model server let us down
      ├── ProviderUnreachable       502  connection refused / failed
      ├── ModelMissing              502  model not pulled
      ├── ProviderFailed            502  an error status, error line, bad line
      ├── ProviderBusy              503  the model server's queue is full
      ├── ProviderTimeout           504  no byte within OLLAMA_TIMEOUT
      │    └── GenerationTimeout    504  past MAX_GENERATION_SECONDS
      └── StreamBroken              502  failed after the first token
           └── StreamStalled        502  ...by sending nothing within OLLAMA_TIMEOUT
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger("piagent")


class PiagentError(Exception):
    status = 500
    headers: dict[str, str] = {}

    def __init__(self, detail: Any) -> None:
        super().__init__(detail if isinstance(detail, str) else repr(detail))
        self.detail = detail


class RequestError(PiagentError):
    status = 400


class BadRequest(RequestError):
    status = 400


class PayloadTooLarge(RequestError):
    status = 413


class UnsupportedMediaType(RequestError):
    status = 415


class ConversationNotFound(RequestError):
    status = 404


class InvalidFields(RequestError):
    """Detail is a list of {"loc", "msg"}, the shape the predecessor's clients parse."""

    status = 422


class MemoryUnavailable(PiagentError):
    """SQLite is locked or failing, or Redis is down: try again shortly."""

    status = 503
    headers = {"Retry-After": "5"}


class Unauthorized(RequestError):
    """401 with the RFC 6750 challenge; the detail never repeats what was sent."""

    status = 401

    def __init__(self, detail: str, invalid: bool) -> None:
        super().__init__(detail)
        challenge = 'Bearer realm="piagent"'
        if invalid:
            challenge += ', error="invalid_token"'
        self.headers = {"WWW-Authenticate": challenge}


class ClientGone(RequestError):
    """The client left while waiting for a slot; 499 as nginx logs it."""

    status = 499


class QueueFull(PiagentError):
    status = 503

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after)}


class ProviderError(PiagentError):
    status = 502


class ProviderUnreachable(ProviderError):
    pass


class ModelMissing(ProviderError):
    pass


class ProviderFailed(ProviderError):
    pass


class ProviderBusy(ProviderError):
    status = 503
    headers = {"Retry-After": "5"}


class ProviderTimeout(ProviderError):
    status = 504


class GenerationTimeout(ProviderTimeout):
    """The whole generation outlived MAX_GENERATION_SECONDS."""


class StreamBroken(ProviderError):
    """Raised after the 200 went out: the response can only be cut short."""


class StreamStalled(StreamBroken):
    """The model went silent mid-reply; logged as a timeout, not an error."""


class StreamAborted(ConnectionResetError):
    """Ends a streamed response without its terminating chunk, so the client sees an
    incomplete transfer. WSGI has no other way to say so; gunicorn treats a reset
    as a vanished client and closes the socket without logging a traceback (the
    cause is logged by piagent just before)."""

    def __init__(self, detail: str) -> None:
        super().__init__(errno.ECONNRESET, detail)


def invalid_field(field_name: str, message: str) -> InvalidFields:
    return InvalidFields([{"loc": ["body", field_name], "msg": message}])


def error_response(status: int, detail: Any, headers: dict | None = None) -> Response:
    response = jsonify(detail=detail)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _piagent_error(exc: PiagentError) -> Response:
    if isinstance(exc, ProviderError | MemoryUnavailable):
        log.warning("%s: %s", type(exc).__name__, exc.detail)
    return error_response(exc.status, exc.detail, exc.headers)


def _http_error(exc: HTTPException) -> Response:
    headers = {key: value for key, value in exc.get_headers() if key.lower() == "allow"}
    detail = exc.description
    if exc.code == 429:
        # Flask-Limiter describes only the limit; its headers say when to retry.
        detail = f"rate limit exceeded ({detail}); retry after Retry-After seconds"
    return error_response(exc.code or 500, detail, headers)


def _unexpected_error(exc: Exception) -> Response:
    log.exception("unexpected error")
    return error_response(500, "internal server error")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(PiagentError, _piagent_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
