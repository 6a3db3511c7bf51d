"""What a streamed turn emits (tokens, tool calls and results, pings, its end), and
a model start that can run in the background so a stream can ping while the
model reads the prompt.

One event stream feeds every stream format (text, SSE, NDJSON, OpenAI chunks);
the blueprints only frame the events. A failure after the response committed
is raised from the iteration as the ProviderError it is; each format decides
how to say so.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import gevent
from gevent import monkey

from piagent.providers import TokenStream
from piagent.stats import TurnStats


@dataclass(frozen=True)
class Tokens:
    """The model's text chunks that arrived together, in order: written to
    the client in one go, each still framed as its own event."""

    texts: list[str]


@dataclass(frozen=True)
class Ping:
    """Nothing new; written so idle proxies keep the connection and a client
    that left is noticed at the write."""


@dataclass(frozen=True)
class ToolCall:
    """The model asked for one of the agent's tools; sent before it runs.
    `arguments` is the JSON text the model wrote."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolResult:
    """A tool call's result: `result` shortened for the client (the model gets
    all of it), whether it was an error, and how long it took."""

    id: str
    name: str
    result: str
    error: bool
    seconds: float


@dataclass(frozen=True)
class Done:
    """The model finished; the exchange is recorded by the time this is sent."""

    stats: TurnStats


Event = Tokens | Ping | ToolCall | ToolResult | Done
PING = Ping()
T = TypeVar("T")


class Closing(Generic[T]):
    """An iterator whose close() also runs `release`, even if iteration never
    started (a generator that never ran skips its `finally`, and a response
    can be dropped before its first chunk)."""

    def __init__(self, items: Iterator[T], release: Callable[[], None]):
        self._items = items
        self._release = release

    def __iter__(self) -> Iterator[T]:
        return self._items

    def close(self) -> None:
        try:
            close = getattr(self._items, "close", None)  # a generator's
            if close is not None:
                close()
        finally:
            self._release()


class EventStream(Closing[Event]):
    """The events of one turn; close() frees its slot and upstream request."""

    def framed(
        self, frame: Callable[[Iterator[Event]], Iterator[bytes]]
    ) -> Closing[bytes]:
        """The body of a response in one format; closing it closes this too."""
        return Closing(frame(self._items), self.close)


Started = tuple[TokenStream | None, BaseException | None]


def _capture(start: Callable[[], TokenStream]) -> Started:
    # Returned, not raised: gevent prints a traceback for every greenlet that
    # dies of an exception, and these are ordinary provider errors (or a kill).
    try:
        return start(), None
    except BaseException as exc:  # handed to the waiting request
        return None, exc


class Upstream:
    """The model's token stream for one turn, primed now or in the background.

    `start` sends the request and returns once the first token arrived (the
    provider primes). With a `prime_seconds` bound under gevent, it runs in a
    greenlet: if it finishes within the bound, the caller gets its stream or
    its error as before; otherwise `stream` stays None, the caller commits its
    200 and waits with `wait()`, pinging. Without gevent (in-process tests)
    it always primes in the caller, so there is nothing to ping during.
    """

    def __init__(self) -> None:
        self.stream: TokenStream | None = None
        self._greenlet: gevent.Greenlet[[Callable[[], TokenStream]], Started] | None = (
            None
        )

    @classmethod
    def start(
        cls, start: Callable[[], TokenStream], prime_seconds: float | None
    ) -> Upstream:
        upstream = cls()
        if prime_seconds is None or not monkey.is_module_patched("socket"):
            upstream.stream = start()
            return upstream
        upstream._greenlet = gevent.spawn(_capture, start)
        try:
            if upstream.wait(prime_seconds):
                upstream.resolve()
        except BaseException:
            upstream.close()
            raise
        return upstream

    def wait(self, seconds: float) -> bool:
        """Whether the background start has finished, waiting up to `seconds`."""
        assert self._greenlet is not None
        self._greenlet.join(seconds)
        return self._greenlet.ready()

    def resolve(self) -> TokenStream:
        """The started stream, or the start's error raised here."""
        assert self._greenlet is not None and self._greenlet.value is not None
        stream, error = self._greenlet.value
        self._greenlet = None
        if error is not None:
            raise error
        assert stream is not None
        self.stream = stream
        return stream

    def pinged(self, ping_seconds: float) -> Generator[Event, None, TokenStream]:
        """The stream, a PING now and every `ping_seconds` while the model is
        still silent (a generator's return value): for a caller whose 200 is
        committed, so the client hears something and its leaving is noticed."""
        if self.stream is not None:
            return self.stream
        yield PING
        while not self.wait(ping_seconds):
            yield PING
        return self.resolve()

    def close(self) -> None:
        """Abandon a start still under way (closing its connection) or close
        the stream; safe to call twice."""
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is not None:
            greenlet.kill(block=True, timeout=1)
            if greenlet.ready() and greenlet.value and greenlet.value[0] is not None:
                greenlet.value[0].close()
        if self.stream is not None:
            self.stream.close()
