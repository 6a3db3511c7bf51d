"""The 401 check: who sent the request, and whether its key lets it in."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, g, request

from piagent.errors import Unauthorized
from piagent.keys import ApiKeys

log = logging.getLogger("piagent")

# The paths anyone may call without a key; rate limits leave them alone too.
OPEN_PATHS = frozenset({"/health"})


@dataclass(frozen=True)
class Caller:
    """Who sent the request: `label` names a rate-limit bucket and may be
    logged; it is `key-N` for the N-th configured key, never the key itself."""

    label: str
    presented: bool
    authorized: bool


def presented_keys() -> list[str]:
    """Keys the request offers: a Bearer token and/or X-API-Key.

    Both are read because a proxy with its own Basic auth keeps Authorization
    for itself; either one matching a configured key is enough.
    """
    offered = []
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        offered.append(token.strip())
    header = request.headers.get("X-API-Key", "").strip()
    if header:
        offered.append(header)
    return offered


def caller(keys: ApiKeys) -> Caller:
    """The request's caller, worked out once per request and kept on `g`.

    The client address is `request.remote_addr`: what the socket says, or
    what a trusted-proxy middleware (if the deployment installs one) has put
    there from X-Forwarded-For. This module never reads forwarded headers.
    """
    known = g.get("piagent_caller")
    if isinstance(known, Caller):
        return known
    address = f"addr-{request.remote_addr or 'local'}"
    offered = presented_keys() if keys else []
    numbers = [keys.identify(key) for key in offered]
    number = next((n for n in numbers if n is not None), None)
    if not keys:
        found = Caller(address, presented=False, authorized=True)
    elif number is None:
        found = Caller(address, presented=bool(offered), authorized=False)
    else:
        found = Caller(f"key-{number}", presented=True, authorized=True)
    g.piagent_caller = found
    return found


def install_auth(app: Flask, keys: ApiKeys) -> None:
    """Answer 401 to every request without a valid key, except /health and
    CORS preflights (browsers never send credentials on those)."""
    if not keys:
        return

    @app.before_request
    def require_api_key() -> None:
        if request.path in OPEN_PATHS or request.method == "OPTIONS":
            return
        found = caller(keys)
        if found.authorized:
            return
        log.info(
            "refused %s %s from %s: %s API key",
            request.method,
            request.path,
            request.remote_addr,
            "wrong" if found.presented else "no",
        )
        if found.presented:
            raise Unauthorized("invalid API key", invalid=True)
        raise Unauthorized(
            "missing API key: send Authorization: Bearer <key> or X-API-Key: <key>",
            invalid=False,
        )
