"""A loopback HTTP service for the http tool to call: a stand-in for Home Assistant.

Routes, by path:
    /api/...            200 JSON {"path", "method"} (and the JSON body of a POST)
    /api/text           200 text/plain
    /api/big?n=N        200 with N bytes of body
    /api/drip?n=N&gap=S N bytes, one every S seconds
    /api/slow?s=S       headers after S seconds
    /api/trickle?n=N&gap=S  a header of N bytes, one every S seconds
    /api/gzip           200 with Content-Encoding: gzip
    /api/redirect?to=U  302 to U (relative or absolute)
    /api/status?code=C  status C with a JSON body
Everything else is a 404. Every request is recorded (method, path, headers,
body), so tests can check the Host header, the token and what was sent.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _send(self, status: int, body: bytes, ctype: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.server.target.record(
            Seen(self.command, self.path, dict(self.headers.items()), body)
        )
        path = parts.path
        if path == "/api/text":
            return self._send(200, b"plain words", "text/plain; charset=utf-8")
        if path == "/api/big":
            return self._send(200, b"x" * int(query["n"]), "text/plain")
        if path == "/api/drip":
            return self._drip(int(query["n"]), float(query["gap"]))
        if path == "/api/slow":
            time.sleep(float(query["s"]))
            return self._send(200, b"{}", "application/json")
        if path == "/api/trickle":
            return self._trickle(int(query["n"]), float(query["gap"]))
        if path == "/api/gzip":
            packed = gzip.compress(b'{"a": 1}')
            return self._send(200, packed, "application/json", Content_Encoding="gzip")
        if path == "/api/redirect":
            return self._send(302, b"", "text/plain", Location=query["to"])
        if path == "/api/status":
            data = json.dumps({"message": "as asked"}).encode()
            return self._send(int(query["code"]), data, "application/json")
        if path.startswith("/api/"):
            answer: dict[str, Any] = {"path": self.path, "method": self.command}
            if body:
                answer["body"] = json.loads(body)
            return self._send(200, json.dumps(answer).encode(), "application/json")
        return self._send(404, b"not found", "text/plain")

    def _trickle(self, n: int, gap: float) -> None:
        """Headers that never end within a read timeout: each byte comes in time."""
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            for _ in range(n):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(gap)
            self.wfile.write(b"\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass
        self.close_connection = True

    def _drip(self, n: int, gap: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(n))
        self.end_headers()
        try:
            for _ in range(n):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(gap)
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    target: HttpTarget


class HttpTarget:
    """The service on a free loopback port; `seen` lists the requests."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._server = _Server((host, 0), _Handler)
        self._server.target = self
        self.port = self._server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}
        )
        self._thread.daemon = True

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def start(self) -> HttpTarget:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()

    def __enter__(self) -> HttpTarget:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
