"""URLs the http tool may fetch: parsed strictly, matched against allowed prefixes.

A URL is refused rather than repaired when it could mean two things to two
parsers: userinfo (`user@host`), backslashes, whitespace or control characters,
dot segments (`/api/../admin`, also as `%2e%2e`) and encoded slashes (`%2f`,
`%5c`), which some servers decode into a path outside the prefix. What is left
matches a prefix when scheme, host and port are the same and its path is the
prefix's path or continues it after a `/`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}
_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")
_ENCODED_SEPARATOR = re.compile(r"%(2f|5c)", re.IGNORECASE)
_ENCODED_DOT = re.compile(r"%2e", re.IGNORECASE)


class BadUrl(ValueError):
    """Why a URL is refused; the message names no secret."""


@dataclass(frozen=True)
class Url:
    """A URL reduced to what is compared and sent; no userinfo, no fragment."""

    scheme: str
    host: str  # lower case, no trailing dot; an IPv6 address without brackets
    port: int
    path: str  # starts with "/"
    query: str

    @property
    def target(self) -> str:
        """What goes on the request line: the path and the query."""
        return self.path + ("?" + self.query if self.query else "")

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = DEFAULT_PORTS[self.scheme] == self.port
        return host if default else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.target}"


def parse_url(text: str) -> Url:
    """`text` as a Url, or BadUrl saying why it is refused."""
    if len(text) > MAX_URL:
        raise BadUrl(f"the URL is longer than {MAX_URL} characters")
    if _UNSAFE.search(text):
        raise BadUrl("the URL contains whitespace, a control character or a backslash")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise BadUrl("the URL is malformed (its host or port)") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise BadUrl("only http:// and https:// URLs are allowed")
    if "@" in parts.netloc:
        raise BadUrl("a URL with a user name or password (user@host) is not allowed")
    host = (parts.hostname or "").rstrip(".")
    if not host or not host.isascii():
        raise BadUrl("the URL has no host, or one that is not plain ASCII")
    path = parts.path or "/"
    if _ENCODED_SEPARATOR.search(path):
        raise BadUrl("encoded slashes (%2f, %5c) are not allowed in the path")
    segments = _ENCODED_DOT.sub(".", path).split("/")
    if any(segment in (".", "..") for segment in segments):
        raise BadUrl("dot segments (/./, /../) are not allowed in the path")
    return Url(scheme, host, port or DEFAULT_PORTS[scheme], path, parts.query)


def covers(prefix: Url, url: Url) -> bool:
    """Whether `url` is under `prefix`: same scheme, host and port, and a path
    that is the prefix's or continues it at a `/` (/api/ covers /api/states,
    /api covers /api and /api/x but not /apiary)."""
    if (prefix.scheme, prefix.host, prefix.port) != (url.scheme, url.host, url.port):
        return False
    base = prefix.path
    if url.path == base or base.endswith("/") and url.path.startswith(base):
        return True
    return url.path.startswith(base + "/")
