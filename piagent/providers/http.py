"""What the HTTP providers share: a pooled session, error translation, line streams.

Ollama (NDJSON) and OpenAI-compatible servers (SSE) differ only in how a line
of the streamed body reads and in how an error status is worded; the pooling,
the one boundary where `requests` and urllib3 exceptions become provider
errors, the priming of the first token and the line splitting are here once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from io import BufferedReader
from typing import Any, Protocol, TypeVar, cast

import requests
from requests.exceptions import ChunkedEncodingError
from requests.structures import CaseInsensitiveDict
from urllib3 import HTTPResponse
from urllib3.exceptions import HTTPError, ProtocolError, ReadTimeoutError
from urllib3.util import Timeout

from piagent.errors import (
    PiagentError,
    ProviderError,
    ProviderFailed,
    ProviderTimeout,
    ProviderUnreachable,
    StreamBroken,
    StreamStalled,
)
from piagent.providers.base import (
    ChatMessage,
    Options,
    Reply,
    Thought,
    ToolCall,
    ToolOffer,
    Usage,
)
from piagent.providers.chunked import arrived, chunked_reads, line_batches
from piagent.providers.pool import SingleHostAdapter

# Idle connections kept per worker. It only has to cover the streams one gevent
# worker can hold at once (worker_connections), or urllib3 discards connections
# and warns "pool is full".
POOL_SIZE = 1024
# Seconds /ready waits for a model list: a health check must be quick.
READY_TIMEOUT = 5.0
ERROR_BODY_LIMIT = 8192

S = TypeVar("S", bound="LineStream")
log = logging.getLogger("piagent")


class HttpProvider:
    """A model server over one pooled requests session.

    Subclasses set `label` (how messages name the server), `start_hint` (what
    to do when it is down) and parse their own lines in a `LineStream`.
    """

    name = "http"
    label = "the model server"
    start_hint = "is it running?"

    def __init__(
        self,
        host: str,
        *,
        timeout: float,
        connect_timeout: float,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host.rstrip("/")
        self._timeouts = (connect_timeout, timeout)
        # Built once: requests would build and validate one per call (1 us).
        self._stream_timeout = Timeout(connect=connect_timeout, read=timeout)
        self._read_timeout = timeout
        self._headers = dict(headers or {})
        session = requests.Session()
        # No proxies or .netrc for a loopback peer, and no per-request env lookups.
        session.trust_env = False
        session.headers.update(self._headers)
        self._adapter = SingleHostAdapter(POOL_SIZE)
        session.mount("http://", self._adapter)
        session.mount("https://", self._adapter)
        self._session = session

    def stream(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        options: Options | None = None,
        tools: ToolOffer | None = None,
    ) -> LineStream:
        raise NotImplementedError

    def probe(self, models: Sequence[str]) -> list[str]:
        """Start-up warnings: the server down, or models it does not have."""
        try:
            return self._missing(sorted(set(models)))
        except ProviderError as exc:
            return [f"{exc.detail} /chat answers 502 until this is fixed."]

    def _missing(self, models: list[str]) -> list[str]:
        """One problem per model the server lacks; ProviderError if it cannot say."""
        raise NotImplementedError

    def complete(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        options: Options | None = None,
        tools: ToolOffer | None = None,
    ) -> Reply:
        """Always a stream underneath, so the read timeout bounds each gap between
        bytes and never the length of a whole reply."""
        stream = self.stream(model, messages, options, tools)
        texts: list[str] = []
        thoughts: list[str] = []
        try:
            for chunk in stream:
                (thoughts if type(chunk) is Thought else texts).append(chunk)
        finally:
            stream.close()
        return Reply(
            text="".join(texts),
            model=model,
            usage=stream.usage or Usage(),
            first_token_at=stream.first_token_at,
            tool_calls=tuple(stream.tool_calls),
            thinking="".join(thoughts),
        )

    def catalog(self, what: str, model: str | None = None) -> Any:
        """No catalog in Ollama's shapes unless a subclass has one."""
        return {}

    def _open_stream(
        self,
        url: str,
        payload: dict[str, Any],
        stream_class: type[S],
        model: str,
        options: Options | None = None,
    ) -> S:
        """POST the request, map an error status, and prime the first token."""
        with self.translate_errors():
            response = self._post_stream(url, json.dumps(payload).encode())
        if response.status_code != 200:
            raise self._status_error(response, model)
        stream = stream_class(self, response, model)
        stream.stream_thinking = options is not None and options.stream_thinking
        stream.prime()
        return stream

    def _status_error(self, response: requests.Response, model: str) -> ProviderError:
        raise NotImplementedError

    def _post_stream(self, url: str, body: bytes) -> requests.Response:
        """POST straight through the session's adapter and its connection pool.

        Session.request would merge cookies, hooks, environment settings and
        redirects on every call, none of which apply to a model server; that
        was about a tenth of a whole /chat request's CPU on a profile.
        """
        request = requests.PreparedRequest()
        request.method = "POST"
        request.url = url
        request.headers = CaseInsensitiveDict(
            {
                **self._headers,
                "Content-Type": "application/json",
                "Content-Length": str(len(body)),
            }
        )
        request.body = body
        return self._adapter.send(
            request,
            stream=True,
            # requests takes a urllib3 Timeout as it is (adapters.py:
            # isinstance(timeout, TimeoutSauce)); its stubs list numbers only.
            timeout=self._stream_timeout,  # type: ignore[arg-type]  # see above
        )

    def _get(self, path: str, read_timeout: float = READY_TIMEOUT) -> requests.Response:
        with self.translate_errors():
            return self._session.get(
                self.host + path, timeout=(self._timeouts[0], read_timeout)
            )

    @contextmanager
    def translate_errors(self, stream: LineStream | None = None) -> Iterator[None]:
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
            where = f"{self.label} at {self.host}"
            if _started(stream):
                raise StreamBroken(f"{where} dropped the stream") from exc
            if not isinstance(exc, requests.ConnectionError):
                raise ProviderFailed(f"{where} cut its reply short") from exc
            raise self._unreachable(_reason(exc)) from exc
        except (requests.RequestException, HTTPError) as exc:
            error = StreamBroken if _started(stream) else ProviderFailed
            raise error(
                f"bad response from {self.label} at {self.host}: {exc}"
            ) from exc

    def _unreachable(self, reason: str) -> ProviderUnreachable:
        return ProviderUnreachable(
            f"{self.label} unreachable at {self.host} ({reason}); {self.start_hint}"
        )

    def _timeout(self, started: bool) -> ProviderError:
        seconds = f"{self._read_timeout:g}"
        if started:
            return StreamStalled(f"{self.label} sent nothing for {seconds} s mid-reply")
        return ProviderTimeout(
            f"no reply from {self.label} within MODEL_TIMEOUT={seconds} s; the model "
            "may still be loading: try again, or raise MODEL_TIMEOUT (OLLAMA_TIMEOUT "
            "is its older name)"
        )

    def _error_body(self, response: requests.Response) -> tuple[str, str | None]:
        """The message and code of an error answer; the response is closed."""
        try:
            with self.translate_errors():
                raw = next(response.iter_content(ERROR_BODY_LIMIT), b"")
        except ProviderError:
            raw = b""
        finally:
            response.close()
        message, code = error_message(raw)
        return message or f"HTTP {response.status_code}", code


class LineStream:
    """One streamed response, yielding the text of its lines as they arrive.

    Subclasses implement `_parse(line) -> (text, done)` and may set `usage`;
    a stream whose body ends before a line said `done` is a failure.
    """

    unfinished = "the reply ended without its final line"

    def __init__(self, provider: HttpProvider, response: requests.Response, model: str):
        self.model = model
        self.usage: Usage | None = None
        self.tool_calls: list[ToolCall] = []
        self._provider = provider
        self._response = response
        self.started = False
        self.first_token_at: float | None = None
        self._first: list[str] | None = None
        self._done = False
        # Thinking is handed out (as Thought chunks) only when asked for; a
        # line's text that came after its thinking waits here for one step.
        self.stream_thinking = False
        self._after = ""
        self._batches: Generator[list[str], None, None] = self._read_batches()

    def prime(self) -> None:
        """Wait for the first text so failures before it still get their status."""
        try:
            self._first = next(self._batches, None)
        except BaseException:
            self.close()
            raise
        self.first_token_at = time.monotonic()
        self.started = True

    def batches(self) -> Iterator[list[str]]:
        """The texts, grouped as they arrived: each list is what one read brought."""
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        yield from self._batches

    def __iter__(self) -> Iterator[str]:
        for batch in self.batches():
            yield from batch

    def close(self) -> None:
        self._batches.close()
        self._response.close()

    def _read_batches(self) -> Generator[list[str], None, None]:
        with self._provider.translate_errors(self):
            for lines in line_batches(body_reads(self._response.raw)):
                yield from self._batched(lines)
        if not self._done:
            raise self._failure(f"{self._provider.label} {self.unfinished}")

    def _batched(self, lines: list[bytes]) -> Iterator[list[str]]:
        """The texts of the lines one read brought, as one batch.

        The very first text goes out alone, so a reply that arrived whole still
        reaches the client after one line's work; text before a bad line is
        handed out before its error; lines after the final one are ignored.
        """
        texts: list[str] = []
        for line in lines:
            if self._done:
                break
            try:
                content, self._done = self._parse(line)
            except ProviderError:
                if texts:
                    yield texts
                raise
            if content:
                texts.append(content)
                if not self.started:  # prime() sets it once this is taken
                    yield texts
                    texts = []
            if self._after:
                texts.append(self._after)
                self._after = ""
        if texts:
            yield texts

    def _parse(self, line: bytes) -> tuple[str, bool]:
        raise NotImplementedError

    def _failure(self, message: str) -> ProviderError:
        """StreamBroken once text has gone out, else ProviderFailed. Text is
        only ever held back after the first went out alone, so text that came
        with a bad line always follows a started stream."""
        return StreamBroken(message) if self.started else ProviderFailed(message)


def body_reads(raw: HTTPResponse) -> Iterator[bytes]:
    """A response body, piece by piece as it arrives; the connection goes back
    to the pool once a chunked body has been read to its end.

    A chunked body (every streaming model server's) is decoded by the own
    decoder (`chunked`), several chunks per read when several have arrived,
    when `fast_path` allows it; anything else is read by urllib3. urllib3 has
    no public way to say "the body is read", so after the own decoder its
    response's file is closed here as its own chunk reader does.
    """
    source = fast_path(raw)
    if source is None:
        yield from raw.stream(None)
        return
    yield from chunked_reads(partial(arrived, source.fp))
    source.close()
    raw.release_conn()


class _HttplibResponse(Protocol):
    """What the fast path needs of http.client's response under urllib3's."""

    fp: BufferedReader

    def close(self) -> None: ...


_fell_back = False


def fast_path(raw: HTTPResponse) -> _HttplibResponse | None:
    """http.client's response whose buffered socket file the own chunked
    decoder may read, or None: then urllib3's `raw.stream()` reads the body.

    The decoder reaches two private layers below urllib3 (`raw._fp.fp`, the
    socket file), because urllib3 offers no public way to read "whatever has
    arrived" from it. So it is taken only when every assumption it rests on is
    checked here, and an urllib3 that changes them costs speed, never bytes:
    - urllib3 says the body is chunked and supports chunked reads (its own
      test that `_fp` is http.client's response, with an `fp`);
    - there is no Content-Encoding: the decoder hands on the bytes as sent,
      where urllib3 would decompress them;
    - nothing has been read yet: urllib3 counted no bytes and is not inside a
      chunk (body_reads is the body's only reader, called once);
    - the socket file has `peek` and `read1` (an io.BufferedReader).
    Falling back is logged once per process at debug level, so a lost fast path
    shows in a debug log, and tests/test_chunked.py fails on it.
    """
    source = getattr(raw, "_fp", None)
    reason = _unsafe_for_the_decoder(raw, getattr(source, "fp", None))
    if reason is None:
        return cast(_HttplibResponse, source)
    global _fell_back
    if not _fell_back:
        _fell_back = True
        log.debug("model server body read by urllib3, not the own decoder: %s", reason)
    return None


def _unsafe_for_the_decoder(raw: HTTPResponse, file: object) -> str | None:
    """Why the own decoder must not read this body, or None if it may."""
    if not (raw.chunked and raw.supports_chunked_reads()):
        return "the body is not chunked"
    encoding = raw.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        return f"the body has Content-Encoding {encoding}"
    if raw.tell() or raw.chunk_left is not None:
        return "urllib3 has read part of the body"
    if not (hasattr(file, "peek") and hasattr(file, "read1")):
        return "urllib3's socket file has no peek() and read1()"
    return None


def error_message(raw: bytes) -> tuple[str, str | None]:
    """The text of an error body: `{"error": "..."}` (Ollama), `{"error":
    {"message", "code"}}` (OpenAI) or plain text; and its code, if any."""
    try:
        item = json.loads(raw)
    except ValueError:
        item = None
    if isinstance(item, dict):
        error = item.get("error")
        if isinstance(error, str):
            return error, None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            code = error.get("code")
            return error["message"], code if isinstance(code, str) else None
    return raw.decode("utf-8", "replace").strip()[:300], None


def _started(stream: LineStream | None) -> bool:
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
