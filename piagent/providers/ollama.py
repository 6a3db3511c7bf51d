"""Ollama's /api/chat over one pooled requests.Session, read as NDJSON."""

from __future__ import annotations

import json
import logging
import select
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.exceptions import ChunkedEncodingError
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3 import HTTPConnectionPool
from urllib3.connection import HTTPConnection
from urllib3.exceptions import HTTPError, ProtocolError, ReadTimeoutError
from urllib3.util import Timeout

from piagent.errors import (
    ModelMissing,
    PiagentError,
    ProviderBusy,
    ProviderError,
    ProviderFailed,
    ProviderTimeout,
    ProviderUnreachable,
    StreamBroken,
    StreamStalled,
)
from piagent.providers.base import ModelState, Readiness, Reply, Usage

log = logging.getLogger("piagent")

# Idle connections kept per worker. It only has to cover the streams one gevent
# worker can hold at once (worker_connections), or urllib3 discards connections
# and warns "pool is full".
POOL_SIZE = 1024
# Seconds /ready waits for Ollama's model lists: a health check must be quick.
READY_TIMEOUT = 5.0
ERROR_BODY_LIMIT = 8192
# json.loads without its per-call argument checks, for every NDJSON line.
_JSON = json.JSONDecoder()


def keep_alive_value(setting: str) -> int | str:
    """Ollama reads a bare number as seconds but a string only as a Go duration."""
    return int(setting) if setting.lstrip("-").isdigit() else setting


class _OllamaConnection(HTTPConnection):
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

    def request(  # type: ignore[override]
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


class _OllamaAdapter(HTTPAdapter):
    """requests' adapter for one plain-HTTP model server, without the per-call
    work that only applies to many hosts, proxies or cookies.

    Both overrides are hooks requests documents for subclasses. On a profile of
    a non-stream /chat, finding the pool again (URL parsing, pool-key
    normalising) and building a Response with a cookie jar were 6% of the CPU.
    """

    def __init__(self, pool_maxsize: int) -> None:
        super().__init__(pool_connections=1, pool_maxsize=pool_maxsize, max_retries=0)
        self._pool: HTTPConnectionPool | None = None

    def get_connection_with_tls_context(  # type: ignore[override]
        self, request: requests.PreparedRequest, verify: Any, *args: Any, **kwargs: Any
    ) -> HTTPConnectionPool:
        pool = self._pool
        if pool is None:
            pool = super().get_connection_with_tls_context(
                request, verify, *args, **kwargs
            )
            if isinstance(pool, HTTPConnectionPool) and pool.scheme == "http":
                pool.ConnectionCls = _OllamaConnection
                self._pool = pool
        return pool

    def build_response(
        self, req: requests.PreparedRequest, resp: Any
    ) -> requests.Response:
        # No cookie jar: Ollama sets no cookies, and the body is read from
        # `raw` directly. Headers are urllib3's, already case-insensitive.
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


class OllamaProvider:
    name = "ollama"

    def __init__(
        self,
        host: str,
        *,
        timeout: float,
        connect_timeout: float,
        keep_alive: str,
        options: dict[str, Any],
    ) -> None:
        self.host = host.rstrip("/")
        self._timeouts = (connect_timeout, timeout)
        # Built once: requests would build and validate one per call.
        self._chat_timeout = Timeout(connect=connect_timeout, read=timeout)
        self._read_timeout = timeout
        self._payload = {
            "stream": True,
            "options": options,
            "keep_alive": keep_alive_value(keep_alive),
        }
        session = requests.Session()
        # No proxies or .netrc for a loopback peer, and no per-request env lookups.
        session.trust_env = False
        self._adapter = _OllamaAdapter(POOL_SIZE)
        session.mount("http://", self._adapter)
        session.mount("https://", self._adapter)
        self._session = session
        self._chat_url = self.host + "/api/chat"

    def _post_chat(self, body: bytes) -> requests.Response:
        """POST straight through the session's adapter and its connection pool.

        Session.request would merge cookies, hooks, environment settings and
        redirects on every call, none of which apply to Ollama; that was about
        a tenth of a whole /chat request's CPU on a profile.
        """
        request = requests.PreparedRequest()
        request.method = "POST"
        request.url = self._chat_url
        request.headers = CaseInsensitiveDict(
            {"Content-Type": "application/json", "Content-Length": str(len(body))}
        )
        request.body = body
        return self._adapter.send(request, stream=True, timeout=self._chat_timeout)

    def stream(self, model: str, messages: Sequence[dict[str, str]]) -> OllamaStream:
        body = json.dumps({"model": model, "messages": list(messages), **self._payload})
        with self.translate_errors():
            response = self._post_chat(body.encode())
        if response.status_code != 200:
            raise self._status_error(response, model)
        stream = OllamaStream(self, response, model)
        stream.prime()
        return stream

    def complete(self, model: str, messages: Sequence[dict[str, str]]) -> Reply:
        stream = self.stream(model, messages)
        try:
            text = "".join(stream)
        finally:
            stream.close()
        return Reply(
            text=text,
            model=model,
            usage=stream.usage or Usage(),
            first_token_at=stream.first_token_at,
        )

    def readiness(self, models: Sequence[str]) -> Readiness:
        wanted = sorted(set(models))
        try:
            pulled = self._model_names("/api/tags")
            loaded = self._model_names("/api/ps")
        except ProviderError as exc:
            return Readiness({}, problem=exc.detail)
        states = {
            m: ModelState(pulled=_listed(m, pulled), loaded=_listed(m, loaded))
            for m in wanted
        }
        missing = [m for m, state in states.items() if not state.pulled]
        problem = "; ".join(
            f"model {m!r} is not pulled in Ollama at {self.host}: run `ollama pull {m}`"
            for m in missing
        )
        return Readiness(states, problem=problem or None)

    def warm(self, model: str) -> None:
        """POST /api/generate with a model and no prompt: Ollama's way to load."""
        body = {"model": model, "keep_alive": self._payload["keep_alive"]}
        with self.translate_errors():
            response = self._session.post(
                self.host + "/api/generate",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
                timeout=self._timeouts,
            )
            if response.status_code != 200:
                raise self._status_error(response, model)
            response.close()

    def _model_names(self, path: str) -> set[str]:
        """Names in /api/tags (pulled) or /api/ps (loaded), with a short timeout."""
        with self.translate_errors():
            response = self._session.get(
                self.host + path, timeout=(self._timeouts[0], READY_TIMEOUT)
            )
        with response:
            if response.status_code != 200:
                raise ProviderFailed(
                    f"Ollama at {self.host} answered GET {path} with "
                    f"HTTP {response.status_code}"
                )
            try:
                listed = response.json().get("models") or []
                return {
                    name
                    for item in listed
                    for name in (item.get("name"), item.get("model"))
                    if isinstance(name, str)
                }
            except (ValueError, AttributeError, TypeError) as exc:
                raise ProviderFailed(
                    f"Ollama at {self.host} sent an unexpected model list on "
                    f"GET {path}: {exc}"
                ) from None

    def probe(self, models: Sequence[str]) -> list[str]:
        try:
            with self.translate_errors():
                response = self._session.get(
                    self.host + "/api/tags", timeout=(self._timeouts[0], 5.0)
                )
            response.close()
            if response.status_code != 200:
                raise ProviderFailed(f"GET /api/tags answered {response.status_code}")
            listed = response.json().get("models", [])
            pulled = {m.get("name") for m in listed if isinstance(m, dict)}
        except ProviderError as exc:
            return [f"{exc.detail} /chat answers 502 until this is fixed."]
        except (ValueError, AttributeError) as exc:
            return [f"Ollama at {self.host} sent an unexpected model list: {exc}"]
        return [
            f"model {model!r} is not pulled in Ollama at {self.host}: "
            f"run `ollama pull {model}`"
            for model in sorted(set(models))
            if model not in pulled and f"{model}:latest" not in pulled
        ]

    @contextmanager
    def translate_errors(self, stream: OllamaStream | None = None) -> Iterator[None]:
        """Turn requests' and urllib3's exceptions into provider errors, here only.

        ConnectTimeout is both a ConnectionError and a Timeout, and a read
        timeout can arrive as a ConnectionError wrapping urllib3's
        ReadTimeoutError, so the order of these clauses matters. The body is
        read from urllib3 directly, so its ProtocolError and ReadTimeoutError
        arrive unwrapped. Once `stream` has handed out text, every failure is a
        StreamBroken.
        """
        try:
            yield
        except PiagentError:
            raise
        except requests.ConnectTimeout as exc:
            raise self._unreachable("connection timed out") from exc
        except (requests.ReadTimeout, ReadTimeoutError) as exc:
            raise self._timeout(_started(stream)) from exc
        except (requests.ConnectionError, ChunkedEncodingError, ProtocolError) as exc:
            if _wraps_read_timeout(exc):
                raise self._timeout(_started(stream)) from exc
            if _started(stream):
                raise StreamBroken(f"Ollama at {self.host} dropped the stream") from exc
            if not isinstance(exc, requests.ConnectionError):
                raise ProviderFailed(
                    f"Ollama at {self.host} cut its reply short"
                ) from exc
            raise self._unreachable(_reason(exc)) from exc
        except (requests.RequestException, HTTPError) as exc:
            error = StreamBroken if _started(stream) else ProviderFailed
            raise error(f"bad response from Ollama at {self.host}: {exc}") from exc

    def _unreachable(self, reason: str) -> ProviderUnreachable:
        return ProviderUnreachable(
            f"Ollama unreachable at {self.host} ({reason}); is it running? "
            "Start it with `ollama serve` or `systemctl start ollama`."
        )

    def _timeout(self, started: bool) -> ProviderError:
        seconds = f"{self._read_timeout:g}"
        if started:
            return StreamStalled(f"Ollama sent nothing for {seconds} s mid-reply")
        return ProviderTimeout(
            f"no reply from Ollama within OLLAMA_TIMEOUT={seconds} s; the model may "
            "still be loading: try again, or raise OLLAMA_TIMEOUT"
        )

    def _status_error(self, response: requests.Response, model: str) -> ProviderError:
        try:
            with self.translate_errors():
                raw = next(response.iter_content(ERROR_BODY_LIMIT), b"")
        except ProviderError:
            raw = b""
        finally:
            response.close()
        message = _error_message(raw) or f"HTTP {response.status_code}"
        if response.status_code == 404:
            return ModelMissing(
                f"model {model!r} is not available in Ollama at {self.host} "
                f"({message}); run `ollama pull {model}`"
            )
        if response.status_code == 503:
            return ProviderBusy(f"Ollama is busy: {message}")
        return ProviderFailed(f"Ollama failed (HTTP {response.status_code}): {message}")


class OllamaStream:
    """One /api/chat response, yielding `message.content` of each NDJSON line."""

    def __init__(
        self, provider: OllamaProvider, response: requests.Response, model: str
    ):
        self.model = model
        self.usage: Usage | None = None
        self._provider = provider
        self._response = response
        self.started = False
        self.first_token_at: float | None = None
        self._first: str | None = None
        self._tokens = self._read_tokens()

    def prime(self) -> None:
        """Wait for the first text so failures before it still get their status."""
        try:
            self._first = next(self._tokens, None)
        except BaseException:
            self.close()
            raise
        self.first_token_at = time.monotonic()
        self.started = True

    def __iter__(self) -> Iterator[str]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        yield from self._tokens

    def close(self) -> None:
        self._tokens.close()
        self._response.close()

    def _read_tokens(self) -> Iterator[str]:
        done = False
        raw = self._response.raw
        # urllib3's chunk reader itself: requests' iter_content and urllib3's
        # stream() each add a generator layer per chunk, and stream() a decoder
        # call, with nothing to decode (http.client asks for identity).
        if raw.chunked and raw.supports_chunked_reads():
            chunks = raw.read_chunked(None, decode_content=False)
        else:
            chunks = raw.stream(None)
        parse = self._parse
        with self._provider.translate_errors(self):
            for line in _split_lines(chunks):
                if done:
                    continue
                content, done = parse(line)
                if content:
                    yield content
        if not done:
            raise self._failure("Ollama ended the reply without its final line")

    def _parse(self, line: bytes) -> tuple[str, bool]:
        try:
            item = _JSON.decode(line.decode("utf-8"))
        except ValueError:
            item = None
        if not isinstance(item, dict):
            raise self._failure(f"malformed line from Ollama: {line[:200]!r}")
        if "error" in item:
            raise self._failure(f"Ollama error: {item['error']}")
        message = item.get("message")
        content = message.get("content", "") if isinstance(message, dict) else ""
        if not isinstance(content, str):
            raise self._failure(f"malformed line from Ollama: {line[:200]!r}")
        if item.get("done") is True:
            self.usage = Usage(
                prompt_tokens=item.get("prompt_eval_count"),
                reply_tokens=item.get("eval_count"),
                done_reason=item.get("done_reason"),
            )
            return content, True
        return content, False

    def _failure(self, message: str) -> ProviderError:
        return StreamBroken(message) if self.started else ProviderFailed(message)


def _split_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """NDJSON lines as soon as each is complete; Ollama sends one per chunk.

    requests' iter_lines can hold a finished line back until more bytes
    arrive (psf/requests#2433), which would batch tokens.
    """
    pending = b""
    for chunk in chunks:
        if pending:
            chunk = pending + chunk
            pending = b""
        # isspace() rather than strip(): no copy of every line to skip blanks.
        if chunk.endswith(b"\n") and chunk.count(b"\n") == 1:
            if not chunk.isspace():
                yield chunk
            continue
        *lines, pending = chunk.split(b"\n")
        for line in lines:
            if line and not line.isspace():
                yield line
    if pending and not pending.isspace():
        yield pending


def _listed(model: str, names: set[str]) -> bool:
    """Ollama lists a model pulled without a tag as `<name>:latest`."""
    return model in names or f"{model}:latest" in names


def _started(stream: OllamaStream | None) -> bool:
    return stream is not None and stream.started


def _wraps_read_timeout(exc: BaseException) -> bool:
    return any(isinstance(arg, ReadTimeoutError) for arg in exc.args)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if "Connection refused" in text or "ConnectionRefused" in text:
        return "connection refused"
    if "RemoteDisconnected" in text or "closed connection" in text:
        return "it closed the connection without answering"
    return "connection failed"


def _error_message(raw: bytes) -> str:
    try:
        item = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace").strip()[:300]
    if isinstance(item, dict) and isinstance(item.get("error"), str):
        return item["error"]
    return raw.decode("utf-8", "replace").strip()[:300]
