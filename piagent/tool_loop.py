"""One /chat turn of an agent with tools: model, tool calls, results, model, ...

The model's text streams as it comes, in every round. When a round ends in
tool calls, they run one by one (each a ToolCall event, then a ToolResult),
their results go back as `tool` messages and the model is asked again, until
a round ends without calls. At most MAX_TOOL_STEPS rounds of calls run: a
model that asks for more gets its calls answered "not run", and the turn ends
with a note in its place. Everything runs in the turn's generation slot and
within its deadline; the chat service owns the slot, memory and errors.

Messages are built from the stored form (`render`), so what the model is sent
within this turn is byte for byte what the next turn sends as history, and the
model server's prompt cache stays warm.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator

from piagent.events import Event, Tokens, ToolCall, ToolResult, Upstream
from piagent.generation_queue import Slot
from piagent.memory import Message, StoredCall
from piagent.providers import ChatMessage, TokenStream, Usage
from piagent.stats import Ending, ToolRecord, TurnStats
from piagent.tools import Outcome, Toolbox, error_text

# Calls beyond this many in one round are answered "not run".
MAX_CALLS_PER_STEP = 8
# How much of a result a tool_result event (and the request log) shows.
SHORT_RESULT = 200


def render(message: Message) -> ChatMessage:
    """A stored message as the providers are sent it (OpenAI's chat format)."""
    if message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in message.tool_calls
            ],
        }
    if message.role == "tool":
        return {
            "role": "tool",
            "content": message.content,
            "tool_call_id": message.tool_call_id,
        }
    return {"role": message.role, "content": message.content}


def shortened(text: str, limit: int = SHORT_RESULT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def added(total: Usage | None, usage: Usage | None) -> Usage | None:
    """Two model calls' counts together; a count either left out is unknown."""
    if total is None or usage is None:
        return usage or total

    def plus(a: int | None, b: int | None) -> int | None:
        return None if a is None or b is None else a + b

    return Usage(
        plus(total.prompt_tokens, usage.prompt_tokens),
        plus(total.reply_tokens, usage.reply_tokens),
        usage.done_reason,
        plus(total.cached_prompt_tokens, usage.cached_prompt_tokens),
    )


class ToolLoop:
    """The rounds of one turn; `exchange` is what it said and did so far."""

    def __init__(
        self,
        toolbox: Toolbox,
        max_steps: int,
        messages: list[ChatMessage],
        slot: Slot,
        stats: TurnStats,
        open_next: Callable[[list[ChatMessage]], Upstream],
        upstream: Upstream,
        ping_seconds: float,
    ) -> None:
        """`open_next` starts the next model call (with pings, it may still be
        priming in the background); `upstream` is the first, already started.
        `seen` collects the text relayed, every round's."""
        self._toolbox = toolbox
        self._max_steps = max_steps
        self._messages = messages
        self._slot = slot
        self._stats = stats
        self._open_next = open_next
        self.upstream = upstream
        self._ping_seconds = ping_seconds
        self.seen: list[str] = []
        self.ending = Ending.OK
        self.exchange: list[Message] = []
        self._texts: list[str] = []  # this round's text so far
        self._unanswered: list[StoredCall] = []

    def run(self, stream: TokenStream) -> Iterator[Event]:
        """Relay rounds until one ends without tool calls (or the limit)."""
        steps = 0
        while True:
            yield from self._relay(stream)
            calls = stream.tool_calls
            text = "".join(self._texts)
            self._texts = []
            if not calls:
                if text:
                    self.exchange.append(Message("assistant", text))
                return
            asked = tuple(StoredCall(c.id, c.name, c.arguments) for c in calls)
            self._say(Message("assistant", text, asked))
            self._unanswered = list(asked)
            if steps == self._max_steps:
                yield from self._stop(asked)
                return
            steps += 1
            for index, call in enumerate(asked):
                yield from self._call(index, call)
            stream = yield from self._next()

    def recorded(self) -> list[Message]:
        """The exchange as valid history, for memory: a round cut short gets its
        calls without a result answered as such, and text the client saw of an
        unfinished round is kept."""
        messages = list(self.exchange)
        for call in self._unanswered:
            note = error_text("no result: the turn ended before this call finished")
            messages.append(Message("tool", note, (), call.id, call.name))
        if self._texts:
            messages.append(Message("assistant", "".join(self._texts)))
        return messages

    def _relay(self, stream: TokenStream) -> Iterator[Event]:
        batches = stream.batches()
        while (batch := self._slot.next_within(batches)) is not None:
            yield Tokens(batch)
            self._texts.extend(batch)
            self.seen.extend(batch)
        stream.close()
        self._stats.usage = added(self._stats.usage, stream.usage)

    def _say(self, message: Message) -> None:
        self.exchange.append(message)
        self._messages.append(render(message))

    def _call(self, index: int, call: StoredCall) -> Iterator[Event]:
        yield ToolCall(call.id, call.name, call.arguments)
        if index < MAX_CALLS_PER_STEP:
            with self._slot.bounded():
                outcome = self._toolbox.call(call.name, call.arguments)
        else:
            limit = f"not run: at most {MAX_CALLS_PER_STEP} tool calls per round"
            outcome = Outcome(error_text(limit), True, 0.0)
        self._answer(call, outcome)
        yield ToolResult(
            call.id,
            call.name,
            shortened(outcome.content),
            outcome.error,
            outcome.seconds,
        )

    def _answer(self, call: StoredCall, outcome: Outcome) -> None:
        self._say(Message("tool", outcome.content, (), call.id, call.name))
        self._unanswered.remove(call)
        self._stats.tools.append(
            ToolRecord(
                call.id,
                call.name,
                call.arguments,
                shortened(outcome.content),
                outcome.error,
                outcome.seconds,
            )
        )

    def _stop(self, asked: tuple[StoredCall, ...]) -> Iterator[Event]:
        """Past MAX_TOOL_STEPS: the calls are answered "not run", so the
        history stays valid, and a note ends the turn in the model's place."""
        limit = f"MAX_TOOL_STEPS={self._max_steps}"
        for call in asked:
            self._say(
                Message(
                    "tool",
                    error_text(f"not run: this turn reached {limit}"),
                    (),
                    call.id,
                    call.name,
                )
            )
        self._unanswered = []
        note = (
            f"(piagent stopped this turn: the model asked for tools again after "
            f"{self._max_steps} rounds of tool calls, the limit {limit}.)"
        )
        self.exchange.append(Message("assistant", note))
        self.ending = Ending.TOOL_LIMIT
        yield Tokens([note])
        self.seen.append(note)

    def _next(self) -> Generator[Event, None, TokenStream]:
        """Start the next model call, pinging while it is silent (the 200 was
        sent long ago); returns its stream (a generator's return value)."""
        self.upstream.close()
        self.upstream = self._open_next(self._messages)
        return (yield from self.upstream.pinged(self._ping_seconds))
