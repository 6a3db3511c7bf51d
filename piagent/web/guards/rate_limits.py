"""Rate limits per key owner (or client address), by Flask-Limiter in this process."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from flask import Blueprint, Flask, Response, current_app, request

from piagent.keys import Keyring
from piagent.settings import Settings
from piagent.web.guards.auth import caller, is_public

if TYPE_CHECKING:
    from flask_limiter import Limiter

LIMITER_RETRY_AFTER = "X-Piagent-Limiter-Retry-After"
log = logging.getLogger("piagent")
UNLIMITED = "piagent_unlimited"
View = TypeVar("View", bound=Callable[..., object])


def unlimited(view: View) -> View:
    """Mark a view as never rate limited though it needs a key (/metrics: a
    scraper polls it every few seconds with the same key)."""
    setattr(view, UNLIMITED, True)
    return view


def is_unlimited_view(view: Callable[..., object] | None) -> bool:
    return bool(getattr(view, UNLIMITED, False))


def is_unlimited() -> bool:
    """Whether the current request is for a view marked @unlimited."""
    endpoint = request.endpoint
    return endpoint is not None and is_unlimited_view(
        current_app.view_functions.get(endpoint)
    )


def limiter_storage(redis_url: str) -> str:
    """The `limits` storage URI of REDIS_URL (its unix sockets are spelt
    redis+unix://)."""
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url.removeprefix("unix://")
    return redis_url


def install_rate_limits(
    app: Flask,
    settings: Settings,
    keyring: Keyring,
    generating: Iterable[Blueprint],
) -> Limiter | None:
    """RATE_LIMIT_CHAT on the generating blueprints (/chat, /v1/chat/completions
    and /ollama/api/chat, one budget for all), RATE_LIMIT_DEFAULT on the rest
    except @public views (/health, the chat page, the API docs) and CORS
    preflights, which are never limited.

    Counted per key owner, so two keys of one person share a budget. Must be
    installed before the API-key check: a request with a wrong key is then
    counted against its client address, so guessing keys is rate limited too.
    With STATE_BACKEND=local the counters live in the worker and start afresh
    on restart; with redis they are shared by every worker and machine, and
    while Redis is down each process counts alone. The moving window means
    "at most N in any minute", with no burst at a window's edge.
    """
    chat_limit = settings.rate_limit_chat.strip()
    default_limit = settings.rate_limit_default.strip()
    if not chat_limit and not default_limit:
        return None
    # Imported only when some limit is set: Flask-Limiter and limits are about
    # 4 MB of RSS in each process, for nothing when rate limits are off.
    from flask_limiter import Limiter

    app.config["RATELIMIT_HEADERS_ENABLED"] = True
    # Flask-Limiter would put a Retry-After on every answer, even a 200, and
    # raise the 503's own estimate to its window; it gets a header of its own,
    # turned into Retry-After on its 429s only (below).
    app.config["RATELIMIT_HEADER_RETRY_AFTER"] = LIMITER_RETRY_AFTER
    shared = settings.state_backend == "redis"
    redis_options = {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
    }
    limiter = Limiter(
        lambda: caller(keyring).label,
        storage_uri=limiter_storage(settings.redis_url) if shared else "memory://",
        # Typed as str | int, handed to redis-py, which takes these as floats.
        storage_options=redis_options if shared else {},  # type: ignore[arg-type]  # see above
        # Redis down: each process counts alone until Redis answers again
        # (Flask-Limiter checks it again after 1, 2, 4 ... 32 s) and says so.
        in_memory_fallback_enabled=shared,
        key_prefix="piagent" if shared else "",
        strategy="moving-window",
        default_limits=[default_limit] if default_limit else [],
        headers_enabled=True,
    )
    if shared:
        # Its warning ("falling back to in-memory storage") goes where
        # piagent's own do.
        logging.getLogger("flask-limiter").handlers = list(log.handlers)
    chat = limiter.shared_limit(chat_limit, scope="chat") if chat_limit else None
    for blueprint in generating:
        if chat is not None:
            chat(blueprint)
        else:
            limiter.exempt(blueprint)

    @limiter.request_filter
    def unlimited() -> bool:
        return request.method == "OPTIONS" or is_public() or is_unlimited()

    # after_request functions run in reverse order: this one runs after
    # Flask-Limiter's, which rounds a retry under a second down to 0.
    @app.after_request
    def retry_after_on_429_only(response: Response) -> Response:
        seconds = response.headers.pop(LIMITER_RETRY_AFTER, None)
        if response.status_code == 429 and seconds is not None:
            response.headers["Retry-After"] = str(max(int(seconds), 1))
        return response

    limiter.init_app(app)
    return limiter
