"""Rate limits per key owner (or client address), by Flask-Limiter in this process."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from flask import Blueprint, Flask, Response, request

from piagent.keys import Keyring
from piagent.settings import Settings
from piagent.web.guards.auth import caller, is_public

if TYPE_CHECKING:
    from flask_limiter import Limiter

LIMITER_RETRY_AFTER = "X-Piagent-Limiter-Retry-After"


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
    In-memory counters: they live in the worker (WORKERS=1) and start afresh
    on restart. The moving window means "at most N in any minute", with
    no burst at a window's edge.
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
    limiter = Limiter(
        lambda: caller(keyring).label,
        storage_uri="memory://",
        strategy="moving-window",
        default_limits=[default_limit] if default_limit else [],
        headers_enabled=True,
    )
    shared = limiter.shared_limit(chat_limit, scope="chat") if chat_limit else None
    for blueprint in generating:
        if shared is not None:
            shared(blueprint)
        else:
            limiter.exempt(blueprint)

    @limiter.request_filter
    def unlimited() -> bool:
        return request.method == "OPTIONS" or is_public()

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
