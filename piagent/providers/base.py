"""The provider protocol: a whole reply, or a primed stream of text chunks.

Messages are dicts in OpenAI's chat format, the one both kinds of model server
are spoken to in: `role` and `content`, an assistant's `tool_calls` (`id`,
`type`, `function` with `name` and `arguments` as a JSON text) and a tool
result's `tool_call_id`. The Ollama provider converts them to Ollama's own
format (arguments as an object, `tool_name`) on the way out.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# A message as the providers take it (see the module docstring).
ChatMessage = dict[str, Any]


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
    # Ollama's own timings of the generation, in nanoseconds (None: not sent):
    # total_duration, load_duration, prompt_eval_duration, eval_duration.
    durations: tuple[int | None, int | None, int | None, int | None] | None = None


class Thought(str):
    """A chunk of the model's thinking (Ollama's `message.thinking`, an
    OpenAI-compatible server's `delta.reasoning_content`), handed out among
    the text chunks only to a request that asked for it (Options.stream_thinking):
    a framer that knows no thinking never sees one."""

    __slots__ = ()


@dataclass(frozen=True)
class Options:
    """Per-request options asked by a client; None keeps the provider's setting.

    Beyond temperature and max_tokens, the fields an Ollama client may send
    (/ollama/api/chat): `format` is "json" or a JSON schema; `think` True,
    False or "low"/"medium"/"high"; `num_ctx` and `keep_alive` change what
    Ollama loads (the web layer pins them unless clients may choose);
    `top_p`, `top_k`, `seed` and `stop` are sampling. A provider passes on
    what its server takes (see each provider). `stream_thinking` asks the
    stream to hand out the model's thinking as Thought chunks.
    """

    temperature: float | None = None
    max_tokens: int | None = None
    format: str | dict[str, Any] | None = None
    think: bool | str | None = None
    num_ctx: int | None = None
    keep_alive: int | str | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] | None = None
    stream_thinking: bool = False


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model made: `arguments` is JSON text, as the model
    wrote it (an OpenAI-compatible server) or as piagent wrote the object
    Ollama sent (compact, in the model's key order), so it renders the same
    bytes every time it is sent back."""

    id: str
    name: str
    arguments: str

    def wire(self) -> dict[str, Any]:
        """The call in an assistant message of OpenAI's format."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


def arguments_text(arguments: Any) -> str:
    """A call's arguments given as an object, as JSON text: compact, in the
    object's key order, so the same call renders the same bytes every time
    it is sent back and the model's prompt cache stays warm."""
    return json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))


def new_call_id() -> str:
    """An id for a call the model server gave none (Ollama may not)."""
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass(frozen=True)
class ToolOffer:
    """Tools a request offers the model: definitions in OpenAI's function
    format, and an OpenAI client's `tool_choice` and `parallel_tool_calls`
    (passed on where the model server takes them)."""

    definitions: tuple[dict[str, Any], ...]
    choice: Any = None
    parallel: bool | None = None


@dataclass(frozen=True)
class Reply:
    """A whole reply, as a JSON answer needs it."""

    text: str
    model: str
    usage: Usage
    # time.monotonic() when the first text arrived, for time-to-first-token.
    first_token_at: float | None = None
    tool_calls: tuple[ToolCall, ...] = field(default=())
    # The model's thinking, when Options.stream_thinking asked for it.
    thinking: str = ""


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
    # The tool calls the model made, complete once the stream has ended.
    tool_calls: list[ToolCall]

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
        messages: Sequence[ChatMessage],
        options: Options | None = None,
        tools: ToolOffer | None = None,
    ) -> TokenStream:
        """Start a generation; raise a ProviderError if it fails before any text
        (or, for a reply of tool calls only, before it ended)."""
        ...

    def complete(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        options: Options | None = None,
        tools: ToolOffer | None = None,
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

    def catalog(self, what: str, model: str | None = None) -> Any:
        """The model server's own description of its models in Ollama's shapes,
        for /ollama: "tags" ({name: entry of /api/tags}), "ps" ({name: entry
        of /api/ps}) or "show" (/api/show of `model`, a dict). A server
        without such an API answers {} ; a failure raises a ProviderError."""
        ...
