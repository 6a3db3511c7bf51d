"""How /chat frames a turn's events: plain text, server-sent events or NDJSON.

One event stream feeds all three. text/plain (the default) carries the tokens
only and ends a failed stream without its terminating chunk; SSE and NDJSON
carry the same events, `token`, `done` and `error`, plus pings while the model
has not sent its first token, and always end properly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from piagent.errors import ProviderError, StreamAborted, stream_error
from piagent.events import Done, Event, Ping, Tokens

TEXT = "text/plain"
SSE = "text/event-stream"
NDJSON = "application/x-ndjson"
FORMATS = (TEXT, SSE, NDJSON)
CONTENT_TYPES = {
    TEXT: "text/plain; charset=utf-8",
    SSE: "text/event-stream; charset=utf-8",
    NDJSON: "application/x-ndjson; charset=utf-8",
}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def text_frames(events: Iterator[Event]) -> Iterator[bytes]:
    """The predecessor's contract: tokens as they come, nothing else."""
    try:
        for event in events:
            if isinstance(event, Tokens):
                yield "".join(event.texts).encode()
    except ProviderError as exc:
        raise StreamAborted(str(exc.detail)) from exc


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {_json(data)}\n\n".encode()


def _ndjson(name: str, data: dict[str, Any]) -> bytes:
    return (_json({"event": name, **data}) + "\n").encode()


SSE_PING = b": ping\n\n"
NDJSON_PING = b'{"event":"ping"}\n'


def event_frames(
    frame: Callable[[str, dict[str, Any]], bytes],
    ping: bytes,
    done: Callable[[Done], dict[str, Any]],
) -> Callable[[Iterator[Event]], Iterator[bytes]]:
    """A framer of every event; a failure is an `error` event ending the body."""

    def frames(events: Iterator[Event]) -> Iterator[bytes]:
        try:
            for event in events:
                if isinstance(event, Tokens):
                    yield b"".join(frame("token", {"text": t}) for t in event.texts)
                elif isinstance(event, Ping):
                    yield ping
                elif isinstance(event, Done):
                    yield frame("done", done(event))
        except ProviderError as exc:
            yield frame("error", stream_error(exc))

    return frames


def framer(
    media_type: str, done: Callable[[Done], dict[str, Any]]
) -> Callable[[Iterator[Event]], Iterator[bytes]]:
    if media_type == SSE:
        return event_frames(_sse, SSE_PING, done)
    if media_type == NDJSON:
        return event_frames(_ndjson, NDJSON_PING, done)
    return text_frames
