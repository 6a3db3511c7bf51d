"""Every error piagent answers with, each carrying its HTTP status; no Flask here.

PiagentError                       500  (never raised as such)
 ├── RequestError                        the caller can fix it
 │    ├── BadRequest                400  body is not a JSON object
 │    ├── HostNotAllowed            400  Host names no host in ALLOWED_HOSTS
 │    ├── ForeignOrigin             403  a POST/DELETE from another site's page
 │    ├── ContextTooLong            400  /v1 messages do not fit CTX_TOKENS
 │    ├── Unauthorized              401  no API key, or a wrong one
 │    ├── PayloadTooLarge           413  body over MAX_BODY_BYTES
 │    ├── UnsupportedMediaType      415  not application/json
 │    ├── ConversationNotFound      404  unknown or expired conversation id
 │    ├── UnknownModel              404  /v1: `model` names no agent
 │    ├── InvalidFields             422  [{"loc": [...], "msg": ...}, ...]
 │    └── ClientGone                499  left while waiting (nobody reads it)
 ├── MemoryUnavailable             503  the memory store cannot be reached
 ├── StateUnavailable              503  shared slots (Redis) cannot be counted
 ├── QueueFull                      503  too many generations waiting; Retry-After
 └── ProviderError                       the model server let us down
      ├── ProviderUnreachable       502  connection refused / failed
      ├── ModelMissing              502  model not pulled
      ├── ProviderFailed            502  an error status, error line, bad line
      ├── ProviderBusy              503  the model server's queue is full
      ├── ProviderTimeout           504  no byte within MODEL_TIMEOUT
      │    └── GenerationTimeout    504  past MAX_GENERATION_SECONDS
      └── StreamBroken              502  failed after the first token
           └── StreamStalled        502  ...by sending nothing within MODEL_TIMEOUT

The status and headers are plain attributes, so the domain (providers, memory,
the chat service) can raise these without knowing HTTP servers; the one place
where each becomes an answer, in both of its dialects (`{"detail": ...}`, and
OpenAI's under /v1/), is piagent/web/errors.py.
"""

from __future__ import annotations

from typing import Any


class PiagentError(Exception):
    """Base of every error piagent answers with: `detail` is the body's
    detail, `status` and `headers` the answer's."""

    status = 500
    headers: dict[str, str] = {}

    def __init__(self, detail: Any) -> None:
        super().__init__(detail if isinstance(detail, str) else repr(detail))
        self.detail = detail


class RequestError(PiagentError):
    """Something the caller can fix; a 4xx."""

    status = 400


class BadRequest(RequestError):
    """The body is not a readable JSON object."""

    status = 400


class HostNotAllowed(RequestError):
    """The Host header names a host piagent does not answer to (DNS rebinding)."""

    status = 400


class ForeignOrigin(RequestError):
    """A POST or DELETE whose Origin is neither piagent's own nor in CORS_ORIGINS."""

    status = 403


class PayloadTooLarge(RequestError):
    """The body is larger than MAX_BODY_BYTES (chunked bodies too)."""

    status = 413


class UnsupportedMediaType(RequestError):
    """The body is not application/json."""

    status = 415


class ContextTooLong(RequestError):
    """/v1 messages that do not fit CTX_TOKENS beside the reply."""

    status = 400


class UnknownModel(RequestError):
    """/v1: `model` names no agent."""

    status = 404


class ConversationNotFound(RequestError):
    """No stored conversation by that id, or it expired."""

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


class StateUnavailable(PiagentError):
    """STATE_BACKEND=redis and Redis cannot be reached: generation slots cannot
    be counted, so none is given (the cap fails closed); try again shortly."""

    status = 503
    headers = {"Retry-After": "5"}


class QueueFull(PiagentError):
    """Too many generations waiting, or one waited too long; Retry-After
    says when a slot is likely free."""

    status = 503

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after)}


class ProviderError(PiagentError):
    """The model server let us down."""

    status = 502


class ProviderUnreachable(ProviderError):
    """The model server refused or failed the connection."""


class ModelMissing(ProviderError):
    """The model server lacks the model (not pulled, not listed)."""


class ProviderFailed(ProviderError):
    """An error status, an error line or a line that is not a chat chunk.

    `upstream_status` is the model server's HTTP status when it answered with
    one: a 4xx is about the request, which another model host would refuse
    too; anything else is about the host (piagent.providers.hosts).
    """

    def __init__(self, detail: str, upstream_status: int | None = None) -> None:
        super().__init__(detail)
        self.upstream_status = upstream_status


class ProviderBusy(ProviderError):
    """The model server's own queue is full; try again shortly."""

    status = 503
    headers = {"Retry-After": "5"}


class ProviderTimeout(ProviderError):
    """No byte from the model server within MODEL_TIMEOUT."""

    status = 504


class GenerationTimeout(ProviderTimeout):
    """The whole generation outlived MAX_GENERATION_SECONDS."""


class StreamBroken(ProviderError):
    """Raised after the 200 went out: the response can only be cut short."""


class StreamStalled(StreamBroken):
    """The model went silent mid-reply; logged as a timeout, not an error."""


def invalid_field(field_name: str, message: str) -> InvalidFields:
    return InvalidFields([{"loc": ["body", field_name], "msg": message}])
