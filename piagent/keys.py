"""API keys: reading them from the settings and the keys file, telling whether
one a request offers is among them, and refusing to serve the network without
them. No HTTP here; the 401 check that uses them is piagent/web/guards/auth.py."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

from piagent.hosts import bind_host
from piagent.settings import Settings, SettingsError, comma_list

log = logging.getLogger("piagent")

MIN_KEY_CHARS = 16
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
    for number, key in enumerate(comma_list(settings.api_keys), 1):
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


def refuse_an_open_network_bind(settings: Settings) -> None:
    """Without API keys (or ALLOW_UNAUTHENTICATED), serve loopback only.

    Run at start-up before the keys are read: whether a key source is set is
    enough here, and an API_KEYS_FILE without keys stops start-up when read.
    """
    keys_set = bool(comma_list(settings.api_keys) or settings.api_keys_file.strip())
    if keys_set or settings.allow_unauthenticated or is_loopback_bind(settings.bind):
        return
    raise SettingsError(
        f"BIND={settings.bind!r}: expected a loopback address while no API keys "
        "are set (set API_KEYS or API_KEYS_FILE, or ALLOW_UNAUTHENTICATED=true to "
        "serve the network without keys)"
    )


def is_loopback_bind(bind: str) -> bool:
    """True when every address of a gunicorn bind is reachable from this host only.

    Unix sockets count as local; `fd://` and host names other than localhost
    cannot be told apart from a LAN address, so they do not.
    """
    for address in comma_list(bind):
        if address.startswith("unix:"):
            continue
        if address.startswith("fd://"):
            return False
        host = bind_host(address)
        if host == "localhost":
            continue
        try:
            if not ip_address(host).is_loopback:
                return False
        except ValueError:
            return False
    return True
