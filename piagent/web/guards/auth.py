"""The 401 check: who sent the request, and whether its key lets it in."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from flask import Flask, current_app, g, request

from piagent.errors import Unauthorized
from piagent.keys import ApiKeys

log = logging.getLogger("piagent")

View = TypeVar("View", bound=Callable[..., object])
PUBLIC = "piagent_public"


def public(view: View) -> View:
    """Mark a view as open to anyone: no API key, and no rate limit.

    For what must answer before a client has a key or costs next to nothing:
    /health, the chat page and its files (the page must load to ask for a
    key), the API's description. Declared where the view is, so a new view
    is guarded unless it says otherwise; the OpenAPI document reads the same
    mark (no security requirement).
    """
    setattr(view, PUBLIC, True)
    return view


def is_public_view(view: Callable[..., object] | None) -> bool:
    return bool(getattr(view, PUBLIC, False))


def is_public() -> bool:
    """Whether the current request is for a view marked @public."""
    endpoint = request.endpoint
    return endpoint is not None and is_public_view(
        current_app.view_functions.get(endpoint)
    )


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
    """Answer 401 to every request without a valid key, except @public views
    and CORS preflights (browsers never send credentials on those)."""
    if not keys:
        return

    @app.before_request
    def require_api_key() -> None:
        if request.method == "OPTIONS" or is_public():
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
