"""Every error piagent answers with, and the one place each becomes a status and JSON.

PiagentError                       500  (never raised as such)
 ├── RequestError                        the caller can fix it
 │    ├── BadRequest                400  body is not a JSON object
 │    ├── ContextTooLong            400  /v1 messages do not fit CTX_TOKENS
 │    ├── Unauthorized              401  no API key, or a wrong one
 │    ├── PayloadTooLarge           413  body over MAX_BODY_BYTES
 │    ├── UnsupportedMediaType      415  not application/json
 │    ├── ConversationNotFound      404  unknown or expired conversation id
 │    ├── UnknownModel              404  /v1: `model` names no agent
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

Two dialects of the same mapping: `{"detail": ...}` everywhere, and under /v1/
OpenAI's `{"error": {"message", "type", "param", "code"}}`, where every other
4xx a client can fix is a 400, as OpenAI's clients expect (OPENAI_KINDS below).
A stream that already sent its 200 reports a failure as an event built from
`stream_error()` or `openai_error_body()`.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from flask import Flask, Response, has_request_context, jsonify, request
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


class ContextTooLong(RequestError):
    status = 400


class UnknownModel(RequestError):
    status = 404


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


# OpenAI's error `type` and `code` per error class (the nearest ancestor wins).
OPENAI_KINDS: dict[type[PiagentError], tuple[str, str | None]] = {
    PiagentError: ("server_error", None),
    RequestError: ("invalid_request_error", None),
    InvalidFields: ("invalid_request_error", "invalid_value"),
    ContextTooLong: ("invalid_request_error", "context_length_exceeded"),
    Unauthorized: ("invalid_request_error", "invalid_api_key"),
    UnknownModel: ("invalid_request_error", "model_not_found"),
    ClientGone: ("invalid_request_error", "client_gone"),
    MemoryUnavailable: ("server_error", "memory_unavailable"),
    QueueFull: ("server_error", "queue_full"),
    ProviderError: ("server_error", "model_server_error"),
    ProviderUnreachable: ("server_error", "model_server_unreachable"),
    ModelMissing: ("server_error", "model_missing"),
    ProviderBusy: ("server_error", "model_server_busy"),
    ProviderTimeout: ("server_error", "model_server_timeout"),
    GenerationTimeout: ("server_error", "generation_timeout"),
}
# Statuses OpenAI's clients know by name; any other 4xx becomes a 400 there.
OPENAI_STATUSES = frozenset({400, 401, 403, 404, 405, 409, 429, 499})
OPENAI_PREFIX = "/v1/"


def _json_response(
    status: int, body: dict[str, Any], headers: dict | None = None
) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def error_response(status: int, detail: Any, headers: dict | None = None) -> Response:
    return _json_response(status, {"detail": detail}, headers)


def stream_error(exc: PiagentError) -> dict[str, Any]:
    """A failure inside an SSE/NDJSON /chat stream: the status it would have had."""
    return {"status": exc.status, "detail": exc.detail}


def _message_and_param(detail: Any) -> tuple[str, str | None]:
    """InvalidFields' list of {"loc", "msg"} as one message and its first field."""
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        fields = [".".join(map(str, item.get("loc", [])[1:])) for item in detail]
        message = "; ".join(
            f"{name}: {item.get('msg')}" if name else str(item.get("msg"))
            for name, item in zip(fields, detail, strict=True)
        )
        return message, fields[0] or None
    return str(detail), None


def openai_error_body(
    exc: PiagentError | None = None,
    *,
    message: str | None = None,
    kind: str = "server_error",
    code: str | None = None,
) -> dict[str, Any]:
    """OpenAI's error object, for an answer or a `data:` event in a stream."""
    param = None
    if exc is not None:
        kind, code = next(
            OPENAI_KINDS[cls] for cls in type(exc).__mro__ if cls in OPENAI_KINDS
        )
        message, param = _message_and_param(exc.detail)
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def openai_status(status: int) -> int:
    return status if status >= 500 or status in OPENAI_STATUSES else 400


def _openai_dialect() -> bool:
    return has_request_context() and request.path.startswith(OPENAI_PREFIX)


def _openai_response(
    status: int, body: dict[str, Any], headers: dict | None = None
) -> Response:
    return _json_response(openai_status(status), body, headers)


def _piagent_error(exc: PiagentError) -> Response:
    if isinstance(exc, ProviderError | MemoryUnavailable):
        log.warning("%s: %s", type(exc).__name__, exc.detail)
    if _openai_dialect():
        return _openai_response(exc.status, openai_error_body(exc), exc.headers)
    return error_response(exc.status, exc.detail, exc.headers)


def _http_error(exc: HTTPException) -> Response:
    headers = {key: value for key, value in exc.get_headers() if key.lower() == "allow"}
    detail = exc.description
    status = exc.code or 500
    if status == 429:
        # Flask-Limiter describes only the limit; its headers say when to retry.
        detail = f"rate limit exceeded ({detail}); retry after Retry-After seconds"
    if _openai_dialect():
        kind, code = "invalid_request_error", None
        if status == 429:
            kind, code = "requests", "rate_limit_exceeded"
        elif status == 404:
            detail = f"Invalid URL ({request.method} {request.path})"
        body = openai_error_body(message=detail, kind=kind, code=code)
        return _openai_response(status, body, headers)
    return error_response(status, detail, headers)


def _unexpected_error(exc: Exception) -> Response:
    log.exception("unexpected error")
    if _openai_dialect():
        return _openai_response(500, openai_error_body(message="internal server error"))
    return error_response(500, "internal server error")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(PiagentError, _piagent_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
