"""API keys: who may use piagent, checked before any view runs."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, g, request

from piagent.errors import Unauthorized
from piagent.settings import Settings, SettingsError

log = logging.getLogger("piagent")

MIN_KEY_CHARS = 16
OPEN_PATHS = frozenset({"/health"})
MAKE_ONE = (
    "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
)


def _key_problem(key: str) -> str | None:
    """Why a key cannot be used, in words that never repeat the key."""
    if len(key) < MIN_KEY_CHARS:
        return f"{len(key)} characters; expected at least {MIN_KEY_CHARS} ({MAKE_ONE})"
    if not all("!" <= char <= "~" and char != "," for char in key):
        return "expected printable ASCII without spaces or commas"
    return None


def parse_keys_file(text: str, source: str) -> list[str]:
    """One key a line; blank lines and `#` comments (whole or after a key) skipped."""
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        key, _, rest = line.strip().partition(" ")
        if not key or key.startswith("#"):
            continue
        if rest.strip() and not rest.strip().startswith("#"):
            raise SettingsError(f"{source}: line {number}: expected one key a line")
        problem = _key_problem(key)
        if problem:
            raise SettingsError(f"{source}: line {number}: the key has {problem}")
        keys.append(key)
    return keys


def load_api_keys(settings: Settings) -> ApiKeys:
    """Every key from API_KEYS and API_KEYS_FILE; problems stop start-up by line."""
    keys = []
    items = [item.strip() for item in settings.api_keys.split(",")]
    for number, key in enumerate(filter(None, items), 1):
        problem = _key_problem(key)
        if problem:
            raise SettingsError(f"API_KEYS: key {number} has {problem}")
        keys.append(key)
    path = settings.api_keys_file.strip()
    if path:
        source = f"API_KEYS_FILE={path!r}"
        try:
            text = Path(path).read_text(encoding="utf-8")
            mode = os.stat(path).st_mode
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise SettingsError(f"{source}: cannot read the file ({reason})") from None
        from_file = parse_keys_file(text, source)
        if not from_file:
            raise SettingsError(f"{source}: expected at least one key (one a line)")
        if mode & stat.S_IROTH:
            log.warning("%s is readable by every user; chmod 600 it", source)
        keys.extend(from_file)
    return ApiKeys.of(keys)


@dataclass(frozen=True)
class ApiKeys:
    """SHA-256 digests of the keys: equal-length values to compare in constant
    time, and nothing worth printing if the object ever ends up in a log."""

    digests: tuple[bytes, ...]

    @classmethod
    def of(cls, keys: Iterable[str]) -> ApiKeys:
        unique = dict.fromkeys(key.encode("ascii") for key in keys)
        return cls(tuple(hashlib.sha256(key).digest() for key in unique))

    def __bool__(self) -> bool:
        return bool(self.digests)

    def __len__(self) -> int:
        return len(self.digests)

    def identify(self, presented: str) -> int | None:
        """The 1-based number of the matching key, or None.

        Every key is compared, without stopping at a match, so the time taken
        says nothing about which key or how much of one was right.
        """
        if not presented.isascii():
            return None
        digest = hashlib.sha256(presented.encode("ascii")).digest()
        found = 0
        for number, known in enumerate(self.digests, 1):
            if hmac.compare_digest(digest, known):
                found = number
        return found or None


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
    if known is not None:
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
