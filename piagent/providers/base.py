"""The provider protocol: a whole reply, or a primed stream of text chunks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Usage:
    """The model server's own counts, from its final line.

    `prompt_tokens` is the whole prompt, the part read from the server's prompt
    cache included, as OpenAI's `prompt_tokens` and Ollama's `prompt_eval_count`
    count it; `cached_prompt_tokens` is that part (None when the server does
    not say), so the tokens the model had to read are the difference.
    """

    prompt_tokens: int | None = None
    reply_tokens: int | None = None
    done_reason: str | None = None
    cached_prompt_tokens: int | None = None


@dataclass(frozen=True)
class Options:
    """Per-request sampling asked by a client; None keeps the provider's setting."""

    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class Reply:
    """A whole reply, as a JSON answer needs it."""

    text: str
    model: str
    usage: Usage
    # time.monotonic() when the first text arrived, for time-to-first-token.
    first_token_at: float | None = None


@dataclass(frozen=True)
class ModelState:
    """Whether a model is on the server (pulled) and in memory (loaded)."""

    pulled: bool
    loaded: bool


@dataclass(frozen=True)
class HostReport:
    """One of several model hosts as /ready lists it: up or down (and why),
    and which of the agents' models it serves."""

    url: str
    up: bool
    models: list[str]
    detail: str | None = None


@dataclass(frozen=True)
class Readiness:
    """What /ready reports: each model's state, and why piagent is not ready;
    with several model hosts, each host too."""

    models: dict[str, ModelState]
    problem: str | None = None
    hosts: tuple[HostReport, ...] = ()

    @property
    def ready(self) -> bool:
        return self.problem is None


class TokenStream(Protocol):
    """Text chunks in the order the model produced them.

    A provider returns one only after the first chunk arrived (or the reply
    turned out to be empty), so every failure before it is raised by `stream()`
    itself and can still become a proper status. Iterating may raise
    `StreamBroken`. `close()` releases the upstream connection at once, which
    is how the model server learns that nobody is listening any more.
    """

    model: str
    usage: Usage | None
    # time.monotonic() when the first text arrived.
    first_token_at: float | None

    def __iter__(self) -> Iterator[str]: ...

    def batches(self) -> Iterator[list[str]]:
        """The same chunks, grouped as they arrived, so that a server can write
        what came in one read with one write; never waits to fill a group."""
        ...

    def close(self) -> None: ...


class Provider(Protocol):
    """A model server. Knows nothing of HTTP clients of piagent or of memory."""

    name: str

    def stream(
        self,
        model: str,
        messages: Sequence[dict[str, str]],
        options: Options | None = None,
    ) -> TokenStream:
        """Start a generation; raise a ProviderError if it fails before any text."""
        ...

    def complete(
        self,
        model: str,
        messages: Sequence[dict[str, str]],
        options: Options | None = None,
    ) -> Reply:
        """The whole reply; a failure at any point raises a ProviderError."""
        ...

    def probe(self, models: Sequence[str]) -> list[str]:
        """Problems worth a start-up warning (down, models not pulled); [] if none."""
        ...

    def readiness(self, models: Sequence[str]) -> Readiness:
        """Whether the server answers and has every model pulled; never raises
        a ProviderError (a problem is reported in the result instead)."""
        ...

    def warm(self, model: str) -> None:
        """Load the model into memory without generating; ProviderError if not."""
        ...
