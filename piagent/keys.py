"""API keys and their owners: API_KEYS and the keys file, digests, the bind rule.

Each key belongs to an owner, a name: conversations are the owner's, rate
limits count per owner and request log lines name the owner, never the key.
The keys file holds one key a line, as `NAME KEY`, `NAME sha256:HEX` (the
key's SHA-256, so the file holds nothing a client could send) or a bare `KEY`,
whose owner is then named after its digest. No HTTP here; the 401 check that
uses them is piagent/web/guards/auth.py, the tool that edits the file
piagent/keytool.py.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import stat
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import NamedTuple

from piagent.agents import AGENT_NAME
from piagent.hosts import bind_host
from piagent.settings import Settings, SettingsError, comma_list

log = logging.getLogger("piagent")

MIN_KEY_CHARS = 16
MAKE_ONE = (
    "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
)
HASHED = "sha256:"
HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
NAME_RULE = "a-z, 0-9, _ and -, starting with a letter or digit, at most 64 characters"
FORMATS = "NAME KEY, NAME sha256:HEX or KEY (a # starts a comment)"


def _key_problem(key: str) -> str | None:
    """Why a key cannot be used, in words that never repeat the key."""
    if len(key) < MIN_KEY_CHARS:
        return f"{len(key)} characters; expected at least {MIN_KEY_CHARS} ({MAKE_ONE})"
    if not all("!" <= char <= "~" and char != "," for char in key):
        return "a space, a comma or a character other than printable ASCII"
    return None


def digest_of(key: str) -> bytes:
    """The SHA-256 of a key: what is compared, and what `sha256:` lines hold."""
    return hashlib.sha256(key.encode("ascii")).digest()


def derived_name(digest: bytes) -> str:
    """The owner of a key given without a name: stable, an agent-style name,
    and nothing a client could send (10 hex digits of the key's SHA-256)."""
    return f"key-{digest.hex()[:10]}"


def is_owner_name(name: str) -> bool:
    return AGENT_NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class KeyLine:
    """One key of the keys file (or of API_KEYS): whose, its digest, where."""

    owner: str
    digest: bytes
    where: str
    number: int = 0


def _words(line: str) -> list[str]:
    """A line's words up to a comment: a word starting with # ends the line
    (a # inside a key is part of the key)."""
    words = []
    for word in line.split():
        if word.startswith("#"):
            break
        words.append(word)
    return words


def _digest(secret: str, where: str) -> bytes:
    if secret.startswith(HASHED):
        digest = secret.removeprefix(HASHED).lower()
        if not HEX_DIGEST.fullmatch(digest):
            raise SettingsError(f"{where}: expected sha256: and 64 hex digits")
        return bytes.fromhex(digest)
    problem = _key_problem(secret)
    if problem:
        raise SettingsError(f"{where}: the key has {problem}")
    return digest_of(secret)


def parse_keys_file(text: str, source: str) -> list[KeyLine]:
    """Every key line of a keys file; blank lines and comments are skipped.

    A problem is one line naming the file and the line, never a key (nor the
    first word of a line that is no name: it might be a key).
    """
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        words = _words(line)
        where = f"{source}: line {number}"
        if not words:
            continue
        if len(words) > 2:
            raise SettingsError(f"{where}: expected {FORMATS}")
        if len(words) == 1:
            if words[0].startswith(HASHED):
                raise SettingsError(f"{where}: a sha256: hash needs its owner's name")
            digest = _digest(words[0], where)
            owner = derived_name(digest)
        else:
            name, secret = words
            if not is_owner_name(name):
                raise SettingsError(
                    f"{where}: expected {FORMATS}; the first of its two words is no "
                    f"name ({NAME_RULE})"
                )
            owner, digest = name, _digest(secret, where)
        found.append(KeyLine(owner, digest, where, number))
    return found


class KeysFile(NamedTuple):
    text: str
    lines: list[KeyLine]
    mode: int


def read_keys_file(path: str) -> KeysFile:
    """The file's text, key lines and mode; unreadable or malformed: SettingsError."""
    source = f"API_KEYS_FILE={path!r}"
    try:
        text = Path(path).read_text(encoding="utf-8")
        mode = os.stat(path).st_mode
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise SettingsError(f"{source}: cannot read the file ({reason})") from None
    return KeysFile(text, parse_keys_file(text, source), mode)


def env_keys(settings: Settings) -> list[KeyLine]:
    """API_KEYS' keys, each owned by its derived name; named by position only."""
    found = []
    for number, key in enumerate(comma_list(settings.api_keys), 1):
        where = f"API_KEYS: key {number}"
        problem = _key_problem(key)
        if problem:
            raise SettingsError(f"{where} has {problem}")
        digest = digest_of(key)
        found.append(KeyLine(derived_name(digest), digest, where))
    return found


def load_api_keys(settings: Settings) -> ApiKeys:
    """Every key from API_KEYS and API_KEYS_FILE; problems stop start-up by line."""
    lines = env_keys(settings)
    path = settings.api_keys_file.strip()
    if path:
        found = read_keys_file(path)
        if not found.lines:
            raise SettingsError(
                f"API_KEYS_FILE={path!r}: expected at least one key (one a line)"
            )
        if found.mode & stat.S_IROTH:
            log.warning(
                "API_KEYS_FILE=%r is readable by every user; chmod 600 it", path
            )
        lines += found.lines
    return ApiKeys.of(lines)


@dataclass(frozen=True)
class ApiKeys:
    """SHA-256 digests of the keys and their owners: equal-length values to
    compare in constant time, and nothing worth printing if the object ever
    ends up in a log."""

    digests: tuple[bytes, ...] = ()
    owners: tuple[str, ...] = ()

    @classmethod
    def of(cls, lines: Iterable[KeyLine]) -> ApiKeys:
        """One entry per key; a key under two owners is refused, since it
        would make one person's conversations another's."""
        seen: dict[bytes, KeyLine] = {}
        for line in lines:
            first = seen.setdefault(line.digest, line)
            if first.owner != line.owner:
                raise SettingsError(
                    f"{line.where}: the same key as {first.where} under another "
                    f"name ({line.owner!r} and {first.owner!r}); a key has one owner"
                )
        return cls(tuple(seen), tuple(line.owner for line in seen.values()))

    def __bool__(self) -> bool:
        return bool(self.digests)

    def __len__(self) -> int:
        return len(self.digests)

    def counts(self) -> Counter[str]:
        """How many keys each owner has."""
        return Counter(self.owners)

    def identify(self, presented: str) -> str | None:
        """The owner of the matching key, or None.

        Every key is compared, without stopping at a match, so the time taken
        says nothing about which key or how much of one was right.
        """
        if not presented.isascii():
            return None
        digest = digest_of(presented)
        found = None
        for known, owner in zip(self.digests, self.owners, strict=True):
            if hmac.compare_digest(digest, known):
                found = owner
        return found

    def describe(self) -> str:
        owners = len(self.counts())
        return f"{len(self)} API key(s) of {owners} owner(s)"


class Keyring:
    """The keys in use, replaced whole when the keys file is read again.

    Readers take `keys` once per request (the 401 check keeps the caller it
    worked out), so a request never sees half a reload. A reload that fails
    keeps the keys in use and logs why, by file and line, never a key.
    Keys cannot be turned on or off by a reload: without keys at start-up
    there is no 401 check to give them to.
    """

    def __init__(self, settings: Settings, keys: ApiKeys) -> None:
        self._settings = settings
        self.keys = keys

    def reload(self) -> bool:
        """Read API_KEYS and API_KEYS_FILE again; True when the new keys are in use."""
        if not self.keys:
            log.info("API keys not reloaded: piagent started without keys")
            return False
        try:
            fresh = load_api_keys(self._settings)
        except SettingsError as exc:
            log.warning(
                "API keys not reloaded, still using the %s: %s",
                self.keys.describe(),
                exc,
            )
            return False
        self.keys = fresh
        log.info("API keys reloaded: %s", fresh.describe())
        return True


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
