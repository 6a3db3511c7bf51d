"""What one chat request did, filled in by the chat service and read by the log."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from piagent.providers import ToolCall, Usage


class Ending(StrEnum):
    """How a request ended, as the request log's `ended` field names it."""

    OK = "ok"
    # The model asked for tools past MAX_TOOL_STEPS: the turn ended with a note.
    TOOL_LIMIT = "tool_limit"
    CLIENT_GONE = "client_gone"
    UPSTREAM_ERROR = "upstream_error"
    TIMEOUT = "timeout"
    REJECTED = "rejected"
    ERROR = "error"


@dataclass(frozen=True)
class ToolRecord:
    """One tool call of a turn, for the reply, the request log and the events:
    the full result is the model's; `result` here is shortened."""

    id: str
    name: str
    arguments: str
    result: str
    error: bool
    seconds: float


@dataclass
class TurnStats:
    """Mutable on purpose: a stream fills it in after the view has returned.

    Times are time.monotonic() seconds. Nothing here is touched per token
    except through the relay's local counters, written once at the end.
    """

    started_at: float | None = None
    first_token_at: float | None = None
    ended_at: float | None = None
    chunks: int | None = None
    usage: Usage | None = None
    ending: Ending | None = None
    reply: str = ""
    # The agent's tools this turn ran, in order.
    tools: list[ToolRecord] = field(default_factory=list)
    # Tool calls the model asked a /v1 client to run (its own tools).
    calls: tuple[ToolCall, ...] = ()
    # The kind of a model server failure after the first token (metrics).
    upstream_error: str | None = None

    @property
    def reply_tokens(self) -> int | None:
        """The model server's count; the number of chunks when it sent none."""
        if self.usage is not None and self.usage.reply_tokens is not None:
            return self.usage.reply_tokens
        return self.chunks

    @property
    def prompt_tokens(self) -> int | None:
        return self.usage.prompt_tokens if self.usage is not None else None

    @property
    def cached_prompt_tokens(self) -> int | None:
        """Prompt tokens the model server reused from its cache; None: unknown."""
        return self.usage.cached_prompt_tokens if self.usage is not None else None

    def tokens_per_second(self) -> float | None:
        """Tokens after the first, per second after the first: the generation
        rate, without the prompt processing and loading the first one waited on."""
        tokens = self.reply_tokens
        if self.first_token_at is None or self.ended_at is None or not tokens:
            return None
        elapsed = self.ended_at - self.first_token_at
        if tokens < 2 or elapsed <= 0:
            return None
        return (tokens - 1) / elapsed

    def summary(self) -> dict[str, int | float | None]:
        """Token counts and speed as /chat reports them (`usage`): the model
        server's counts; time to first token from when the request was taken."""
        ttft = None
        if self.started_at is not None and self.first_token_at is not None:
            ttft = round(max(self.first_token_at - self.started_at, 0.0), 3)
        rate = self.tokens_per_second()
        return {
            "prompt_tokens": self.prompt_tokens,
            "cached_prompt_tokens": self.cached_prompt_tokens,
            "reply_tokens": self.reply_tokens,
            "ttft_s": ttft,
            "tokens_per_s": round(rate, 2) if rate is not None else None,
        }


def ending_for_status(status: int) -> Ending:
    """How a request ended when the chat service did not say (it failed first)."""
    if status == 504:
        return Ending.TIMEOUT
    if status in (502, 503):
        return Ending.UPSTREAM_ERROR
    if status == 499:
        return Ending.CLIENT_GONE
    if 400 <= status < 500:
        return Ending.REJECTED
    if status >= 500:
        return Ending.ERROR
    return Ending.OK
