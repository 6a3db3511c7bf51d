"""A requests adapter for one model server, lean enough for a Pi's hot path.

Both classes use hooks that requests and urllib3 document for subclasses;
each saving was measured on a py-spy profile of a non-stream /chat (see
bench/README.md, "Where the time goes").
"""

from __future__ import annotations

import select
from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_encoding_from_headers
from urllib3 import HTTPConnectionPool
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import ConnectionPool


class LeanConnection(HTTPConnection):
    """urllib3's connection, with less work per request under gevent.

    urllib3 asks "did the peer close?" before reusing a pooled connection, with
    poll(); under gevent a zero-timeout poll() goes through the hub (watchers,
    a switch), 4% of a non-stream /chat's CPU on a profile. gevent's select()
    answers a zero timeout with one plain select() call.

    urllib3 also sends the headers and then the body: two sends and, with
    TCP_NODELAY, two segments. Here a bytes body goes out with the headers.
    """

    _held: bytes | None = None
    _holding = False

    @property
    def is_connected(self) -> bool:
        if self.sock is None:
            return False
        readable, _, _ = select.select([self.sock], [], [], 0)
        return not readable

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: Any = None,
        **kwargs: Any,
    ) -> None:
        self._holding = isinstance(body, bytes) and bool(body)
        try:
            super().request(method, url, body, headers, **kwargs)
            held, self._held = self._held, None
            if held is not None:  # no body followed after all
                super().send(held)
        finally:
            self._holding = False
            self._held = None

    def send(self, data: Any) -> None:
        # The first send of a request is the headers (http.client sends them
        # in one piece); the next is the body, which takes them along.
        if self._holding and self._held is None:
            self._held = bytes(data)
            return
        if self._held is not None:
            data, self._held = self._held + bytes(data), None
        super().send(data)


class SingleHostAdapter(HTTPAdapter):
    """requests' adapter for one model server, without the per-call work that
    only applies to many hosts, proxies or cookies.

    On a profile of a non-stream /chat, finding the pool again (URL parsing,
    pool-key normalising) and building a Response with a cookie jar were 6% of
    the CPU. Plain-HTTP pools (a model server on loopback or the LAN) also get
    LeanConnection; HTTPS ones keep urllib3's own.
    """

    def __init__(self, pool_maxsize: int) -> None:
        super().__init__(pool_connections=1, pool_maxsize=pool_maxsize, max_retries=0)
        self._pool: HTTPConnectionPool | None = None

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: bool | str | None,
        proxies: Mapping[str, str] | None = None,
        cert: tuple[str, str] | str | None = None,
    ) -> ConnectionPool:
        if self._pool is not None:
            return self._pool
        pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
        if isinstance(pool, HTTPConnectionPool) and pool.scheme == "http":
            pool.ConnectionCls = LeanConnection
            self._pool = pool
        return pool

    def build_response(
        self, req: requests.PreparedRequest, resp: Any
    ) -> requests.Response:
        # No cookie jar: model servers set no cookies, and the body is read
        # from `raw` directly. Headers are urllib3's, already case-insensitive.
        response = requests.Response()
        response.status_code = resp.status
        response.headers = resp.headers
        response.encoding = get_encoding_from_headers(resp.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url or ""
        response.request = req
        response.connection = self
        return response
