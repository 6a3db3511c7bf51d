"""Ollama's wire format for /ollama: chat lines, the final line, the stream.

As Ollama's `api/types.go` and `docs/api.md` have them: every line has
`model`, `created_at` (RFC 3339 in UTC with nanoseconds, trailing zeros cut as
Go writes them), `message` and `done`; the final line adds `done_reason` and
the counts and durations (nanoseconds). A failure after the first line is a
line `{"error": "..."}`; no pings, which Ollama's clients would not expect.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from piagent.errors import PiagentError
from piagent.events import Done, Event, Tokens
from piagent.providers import Thought
from piagent.stats import TurnStats
from piagent.web.errors import ollama_error_body
from piagent.web.streams import LENGTH_REASONS, Framer, arguments_value

NANOSECONDS = 1_000_000_000
log = logging.getLogger("piagent")


def created_at() -> str:
    """Now as Go's time.RFC3339Nano in UTC, e.g. 2026-12-02T23:10:05.123456789Z."""
    seconds, nanos = divmod(time.time_ns(), NANOSECONDS)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def message(content: str = "", **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content, **extra}


def tool_calls(stats: TurnStats) -> list[dict[str, Any]]:
    """The model's calls as Ollama writes them: arguments as an object."""
    return [
        {
            "id": call.id,
            "function": {
                "index": index,
                "name": call.name,
                "arguments": arguments_value(call.arguments),
            },
        }
        for index, call in enumerate(stats.calls)
    ]


def _nanos(seconds: float | None) -> int:
    return max(int((seconds or 0.0) * NANOSECONDS), 0)


def _done(stats: TurnStats) -> dict[str, Any]:
    """The end of a final line, in Go's field order: `done_reason`, `done`,
    then the counts and durations of the finished turn: the model server's
    own durations when it sent them (Ollama), else piagent's timings (queue
    wait included in the total, nothing counted as loading)."""
    usage = stats.usage
    reason = usage.done_reason if usage is not None else None
    durations = usage.durations if usage is not None else None
    if durations is None or durations[0] is None:
        started = stats.started_at or 0.0
        first = stats.first_token_at or started
        ended = stats.ended_at or first
        durations = (
            _nanos(ended - started),
            0,
            _nanos(first - started),
            _nanos(ended - first),
        )
    total, load, prompt_eval, evaluation = (value or 0 for value in durations)
    return {
        "done_reason": "length" if reason in LENGTH_REASONS else "stop",
        "done": True,
        "total_duration": total,
        "load_duration": load,
        "prompt_eval_count": stats.prompt_tokens or 0,
        "prompt_eval_duration": prompt_eval,
        "eval_count": stats.reply_tokens or 0,
        "eval_duration": evaluation,
    }


def reply_body(
    model: str, text: str, thinking: str, stats: TurnStats
) -> dict[str, Any]:
    """The whole answer of `stream: false`."""
    body = message(text)
    if thinking:
        body["thinking"] = thinking
    calls = tool_calls(stats)
    if calls:
        body["tool_calls"] = calls
    return {
        "model": model,
        "created_at": created_at(),
        "message": body,
        **_done(stats),
    }


def ndjson_frames(model: str) -> Framer:
    """A turn's events as Ollama's NDJSON lines: a line per text or thinking
    chunk, the tool calls in a line of their own, then the final line; a
    failure is an `{"error"}` line, and ends the body."""
    head = b'{"model":' + _json(model) + b',"created_at":'

    def line(body: dict[str, Any], end: dict[str, Any] | None = None) -> bytes:
        rest = {"message": body, **(end or {"done": False})}
        return head + _json(created_at()) + b"," + _json(rest)[1:] + b"\n"

    def frames(events: Iterator[Event]) -> Iterator[bytes]:
        try:
            for event in events:
                if isinstance(event, Tokens):
                    yield b"".join(
                        line(message(thinking=t) if type(t) is Thought else message(t))
                        for t in event.texts
                    )
                elif isinstance(event, Done):
                    calls = tool_calls(event.stats)
                    if calls:
                        yield line(message(tool_calls=calls))
                    yield line(message(), _done(event.stats))
        except PiagentError as exc:
            yield _json(ollama_error_body(exc)) + b"\n"
        except Exception:
            # Ollama's clients fail a stream without a done or an error line;
            # even a bug of piagent's must end this one properly.
            log.exception("unexpected error in an /ollama stream")
            yield b'{"error":"internal server error"}\n'

    return frames
