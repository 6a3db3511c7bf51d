"""The 401 check: who sent the request, and whether its key lets it in."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from flask import Flask, current_app, g, request

from piagent.errors import Unauthorized
from piagent.keys import Keyring

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
    """Who sent the request: `owner` is its key's owner (None without keys or
    without a valid key), `label` its rate-limit bucket: `owner:NAME`, so the
    keys of one owner share a budget, else `addr:ADDRESS`. Neither is ever
    the key itself."""

    label: str
    owner: str | None
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


def caller(keyring: Keyring) -> Caller:
    """The request's caller, worked out once per request and kept on `g`
    (one request sees one set of keys, even across a reload).

    The client address is `request.remote_addr`: what the socket says, or
    what a trusted-proxy middleware (if the deployment installs one) has put
    there from X-Forwarded-For. This module never reads forwarded headers.
    """
    known = g.get("piagent_caller")
    if isinstance(known, Caller):
        return known
    keys = keyring.keys
    address = f"addr:{request.remote_addr or 'local'}"
    offered = presented_keys() if keys else []
    owners = [keys.identify(key) for key in offered]
    owner = next((found for found in owners if found is not None), None)
    if not keys:
        found = Caller(address, None, presented=False, authorized=True)
    elif owner is None:
        found = Caller(address, None, presented=bool(offered), authorized=False)
    else:
        found = Caller(f"owner:{owner}", owner, presented=True, authorized=True)
    g.piagent_caller = found
    return found


def logged_owner() -> str | None:
    """The owner for the request log, if one was worked out for this request."""
    known = g.get("piagent_caller")
    return known.owner if isinstance(known, Caller) else None


def request_owner(keyring: Keyring) -> str | None:
    """Whose conversations this request reaches: its key's owner, or None
    without keys (one owner, whose conversations have bare ids).

    The 401 check refused a request without a valid key before any view;
    should it not have run, this refuses too rather than hand out the
    keyless conversations.
    """
    found = caller(keyring)
    if not found.authorized:
        raise Unauthorized("invalid API key", invalid=True)
    return found.owner


def install_auth(app: Flask, keyring: Keyring) -> None:
    """Answer 401 to every request without a valid key, except @public views
    and CORS preflights (browsers never send credentials on those)."""
    if not keyring.keys:
        return

    @app.before_request
    def require_api_key() -> None:
        if request.method == "OPTIONS" or is_public():
            return
        found = caller(keyring)
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
