"""The http tool: GET (and, if allowed, POST with a JSON body) under allowed prefixes.

Built for a LAN service such as Home Assistant's REST API, and safe by default:

- only URLs under a prefix of `http.allow` (piagent.tools.urls), redirects
  only to URLs that are themselves allowed (at most MAX_REDIRECTS);
- each allowed host is resolved once, at start-up (or, if it does not resolve
  then, at its first use), and every request connects to those addresses,
  sending the name in Host (and as TLS SNI, the certificate checked against
  it): a DNS answer that changes later (DNS rebinding) cannot point the tool
  at another machine;
- a bearer token read from the environment variable `http.token_env` names,
  never from the file; connect and read timeouts and a deadline for the whole
  request; bodies read up to `http.max_bytes` and no further; compressed
  answers are not asked for and not read.

Failures are ToolError: the model reads them; the client never sees them.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import gevent
from gevent import monkey
from urllib3 import BaseHTTPResponse, HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util import Timeout

from piagent import __version__
from piagent.tools.base import ToolConfigError, ToolError, object_schema
from piagent.tools.urls import BadUrl, Url, covers, parse_url

NAME = "http"
SETTINGS = ("allow", "token_env", "methods", "timeout", "max_bytes")
REPEATABLE = ("allow",)
METHODS = ("GET", "POST")
DEFAULT_TIMEOUT = 5.0
MAX_TIMEOUT = 60.0
DEFAULT_MAX_BYTES = 16384
MAX_MAX_BYTES = 1 << 20
MAX_BODY_BYTES = 16384
MAX_REDIRECTS = 3
REDIRECTS = (301, 302, 303, 307, 308)
READ_SIZE = 8192
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# (host, port) -> the addresses to connect to, as getaddrinfo gives them.
Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` has, in getaddrinfo's order of preference."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


class PinnedHost:
    """One allowed host's addresses, resolved once and then kept."""

    def __init__(self, host: str, port: int, resolver: Resolver) -> None:
        self.host, self.port = host, port
        self._resolver = resolver
        self._addresses: list[str] | None = None
        self._lock = threading.Lock()
        try:
            ipaddress.ip_address(host)
            self._addresses = [host]  # an address needs no resolving
        except ValueError:
            pass

    def pin(self) -> str | None:
        """Resolve now if not yet done; None, or why it failed."""
        try:
            self.addresses()
        except ToolError as exc:
            return str(exc)
        return None

    def addresses(self) -> list[str]:
        with self._lock:
            if self._addresses is None:
                try:
                    found = self._resolver(self.host, self.port)
                except OSError as exc:
                    raise ToolError(f"cannot resolve {self.host}: {exc}") from None
                if not found:
                    raise ToolError(f"cannot resolve {self.host}: no address")
                self._addresses = found
            return self._addresses


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes
    location: str | None


class HttpTool:
    name = NAME

    def __init__(
        self,
        prefixes: Sequence[Url],
        *,
        token: str | None = None,
        methods: Sequence[str] = ("GET",),
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        resolver: Resolver = resolve,
    ) -> None:
        self.prefixes = tuple(prefixes)
        self._token = token
        self.methods = tuple(methods)
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.hosts = {
            (p.host, p.port): PinnedHost(p.host, p.port, resolver)
            for p in self.prefixes
        }
        allowed = ", ".join(map(str, self.prefixes))
        verbs = " or ".join(self.methods)
        self.description = (
            f"HTTP {verbs} to a URL starting with {allowed}. Returns the status "
            "and the body (JSON as JSON)."
        )
        properties: dict[str, Any] = {
            "url": {
                "type": "string",
                "description": f"An absolute URL starting with {allowed}",
                "maxLength": 2048,
            }
        }
        if len(self.methods) > 1:
            properties["method"] = {"type": "string", "enum": list(self.methods)}
        if "POST" in self.methods:
            properties["body"] = {
                "type": "object",
                "description": "The JSON body of a POST",
            }
        self.parameters = object_schema(properties, required=["url"])

    def pin(self) -> list[str]:
        """Resolve every allowed host now; the problems of those that failed."""
        return [p for host in self.hosts.values() if (p := host.pin()) is not None]

    def run(self, arguments: dict[str, Any]) -> str:
        method = arguments.get("method", "GET")
        body = None
        if "body" in arguments:
            if method != "POST":
                raise ToolError("a body is only sent with method POST")
            body = json.dumps(arguments["body"], ensure_ascii=False).encode()
            if len(body) > MAX_BODY_BYTES:
                raise ToolError(f"the body is larger than {MAX_BODY_BYTES} bytes")
        url = self._allowed(arguments["url"])
        with self._deadline():
            answer = self._fetch(method, url, body)
        return json.dumps(
            {
                "status": answer.status,
                "content_type": answer.content_type,
                "body": _body(answer),
            },
            ensure_ascii=False,
        )

    def _allowed(self, text: str) -> Url:
        try:
            url = parse_url(text)
        except BadUrl as exc:
            raise ToolError(f"{exc}: {text[:200]}") from None
        if not any(covers(prefix, url) for prefix in self.prefixes):
            allowed = ", ".join(map(str, self.prefixes))
            raise ToolError(
                f"{url} is not allowed; allowed: URLs starting with {allowed}"
            )
        return url

    def _fetch(self, method: str, url: Url, body: bytes | None) -> Answer:
        for _ in range(MAX_REDIRECTS + 1):
            answer = self._request(method, url, body)
            if answer.status not in REDIRECTS or answer.location is None:
                return answer
            target = urljoin(str(url), answer.location)
            try:
                url = self._allowed(target)
            except ToolError:
                raise ToolError(
                    f"{url} redirected ({answer.status}) to {target[:200]}, which is "
                    "not allowed; not followed"
                ) from None
            if answer.status in (301, 302, 303):
                method, body = "GET", None  # as browsers do
        raise ToolError(f"more than {MAX_REDIRECTS} redirects")

    def _request(self, method: str, url: Url, body: bytes | None) -> Answer:
        headers = {
            "Host": url.host_header,
            "Accept": "application/json, text/*;q=0.9, */*;q=0.1",
            # A compressed body could expand far past max_bytes in one read.
            "Accept-Encoding": "identity",
            "User-Agent": f"piagent/{__version__}",
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if body is not None:
            headers["Content-Type"] = "application/json"
        addresses = self.hosts[(url.host, url.port)].addresses()
        failure = "no address"
        for address in addresses:
            pool = self._pool(url, address)
            try:
                try:
                    response = pool.urlopen(
                        method,
                        url.target,
                        body=body,
                        headers=headers,
                        redirect=False,
                        retries=False,
                        preload_content=False,
                        assert_same_host=False,
                    )
                except (NewConnectionError, ConnectTimeoutError) as exc:
                    failure = _reason(exc)
                    continue  # the host's next address
                try:
                    return self._read(url, response)
                finally:
                    response.close()
            except ReadTimeoutError:
                raise ToolError(
                    f"{url} sent no answer within {self.timeout:g} s"
                ) from None
            except SSLError as exc:
                raise ToolError(f"TLS with {url.host} failed: {_reason(exc)}") from None
            except HTTPError as exc:
                raise ToolError(f"{url} failed: {_reason(exc)}") from None
            finally:
                pool.close()
        raise ToolError(f"cannot connect to {url.host_header}: {failure}")

    def _pool(self, url: Url, address: str) -> HTTPConnectionPool:
        timeout = Timeout(connect=self.timeout, read=self.timeout)
        if url.scheme == "https":
            return HTTPSConnectionPool(
                address,
                url.port,
                timeout=timeout,
                maxsize=1,
                retries=False,
                server_hostname=url.host,
                assert_hostname=url.host,
                cert_reqs="CERT_REQUIRED",
            )
        return HTTPConnectionPool(
            address, url.port, timeout=timeout, maxsize=1, retries=False
        )

    def _read(self, url: Url, response: BaseHTTPResponse) -> Answer:
        encoding = response.headers.get("Content-Encoding", "identity").lower()
        if encoding not in ("", "identity"):
            raise ToolError(
                f"{url} answered with {encoding} content, which is not read"
            )
        started = time.monotonic()
        parts, size = [], 0
        try:
            for part in response.stream(READ_SIZE, decode_content=False):
                size += len(part)
                if size > self.max_bytes:
                    raise ToolError(
                        f"the answer of {url} is larger than http.max_bytes="
                        f"{self.max_bytes}; not read"
                    )
                parts.append(part)
                if time.monotonic() - started > self.timeout:
                    raise ToolError(f"{url} took longer than {self.timeout:g} s")
        except ReadTimeoutError:
            raise ToolError(f"{url} stopped sending for {self.timeout:g} s") from None
        except HTTPError as exc:
            raise ToolError(f"{url} broke off its answer: {_reason(exc)}") from None
        return Answer(
            response.status,
            response.headers.get("Content-Type", ""),
            b"".join(parts),
            response.headers.get("Location"),
        )

    @contextmanager
    def _deadline(self) -> Iterator[None]:
        """The whole request (redirects included) within `timeout` under gevent;
        without it, the reads check the time between them."""
        if not monkey.is_module_patched("socket"):
            yield
            return
        error = ToolError(
            f"the request took longer than http.timeout={self.timeout:g} s"
        )
        with gevent.Timeout(self.timeout, error):
            yield


def _body(answer: Answer) -> Any:
    text = answer.body.decode("utf-8", "replace")
    if "json" in answer.content_type.lower():
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def _reason(exc: BaseException) -> str:
    """The last part of urllib3's message: the cause, without the pool's repr."""
    text = str(exc)
    return text.rsplit(": ", 1)[-1][:200] if text else type(exc).__name__


def build(
    settings: Mapping[str, list[str]],
    *,
    environ: Callable[[str], str | None],
    resolver: Resolver = resolve,
    **_: Any,
) -> HttpTool:
    """The tool from `http.*` settings; ToolConfigError naming what is wrong."""
    allow = [p.strip() for value in settings.get("allow", []) for p in value.split(",")]
    allow = [p for p in allow if p]
    if not allow:
        raise ToolConfigError(
            "http needs http.allow: the URL prefixes it may fetch, e.g. "
            "http.allow: http://homeassistant.local:8123/api/"
        )
    prefixes = []
    for text in allow:
        try:
            prefix = parse_url(text)
        except BadUrl as exc:
            raise ToolConfigError(f"http.allow: {text!r}: {exc}") from None
        if prefix.query:
            raise ToolConfigError(f"http.allow: {text!r}: a prefix has no query")
        prefixes.append(prefix)
    return HttpTool(
        prefixes,
        token=_token(settings, environ),
        methods=_methods(settings),
        timeout=_number(settings, "timeout", DEFAULT_TIMEOUT, MAX_TIMEOUT, float),
        max_bytes=int(
            _number(settings, "max_bytes", DEFAULT_MAX_BYTES, MAX_MAX_BYTES, int)
        ),
        resolver=resolver,
    )


def _token(
    settings: Mapping[str, list[str]], environ: Callable[[str], str | None]
) -> str | None:
    names = settings.get("token_env")
    if not names:
        return None
    name = names[-1]
    if not _VARIABLE.fullmatch(name):
        raise ToolConfigError(
            f"http.token_env: {name!r} is not an environment variable name"
        )
    token = (environ(name) or "").strip()
    if not token:
        raise ToolConfigError(
            f"http.token_env: the environment variable {name} is not set (it holds "
            "the bearer token; the agent file names it and never holds the token)"
        )
    return token


def _methods(settings: Mapping[str, list[str]]) -> tuple[str, ...]:
    values = settings.get("methods")
    if not values:
        return ("GET",)
    methods = [m.strip().upper() for m in values[-1].split(",") if m.strip()]
    if not methods or any(m not in METHODS for m in methods):
        raise ToolConfigError(
            f"http.methods: {values[-1]!r}: expected GET, POST or GET, POST"
        )
    return tuple(dict.fromkeys(methods))


def _number(
    settings: Mapping[str, list[str]],
    key: str,
    default: float,
    highest: float,
    kind: Callable[[str], float],
) -> float:
    values = settings.get(key)
    if not values:
        return default
    try:
        value = kind(values[-1])
    except ValueError:
        value = float("nan")
    if not 0 < value <= highest:
        what, limit = (
            ("an integer", f"{highest:.0f}")
            if kind is int
            else (
                "a number",
                f"{highest:g}",
            )
        )
        raise ToolConfigError(
            f"http.{key}: {values[-1]!r}: expected {what} above 0, at most {limit}"
        )
    return value
