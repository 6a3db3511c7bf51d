"""The chat service: the one place that composes agent, memory and provider."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from piagent import stats as endings
from piagent.agents import Agent
from piagent.errors import (
    GenerationTimeout,
    MemoryUnavailable,
    ProviderError,
    StreamAborted,
    StreamStalled,
    invalid_field,
)
from piagent.generation_queue import GenerationQueue, Slot, always_present
from piagent.memory import MemoryStore, Message
from piagent.providers import Provider, Reply, TokenStream
from piagent.settings import Settings
from piagent.stats import TurnStats

log = logging.getLogger("piagent")

# Tokens are estimated from UTF-8 bytes at 3 per token, plus a few per message for
# the chat template's role markers: real tokenizers average about 4 characters
# per token in English, so this errs on the side of sending less history.
BYTES_PER_TOKEN = 3
TOKENS_PER_MESSAGE = 4


def estimate_tokens(text: str) -> int:
    return -(-len(text.encode("utf-8")) // BYTES_PER_TOKEN) + TOKENS_PER_MESSAGE


def build_messages(
    system_prompt: str, history: Sequence[Message], message: str, budget_tokens: int
) -> list[dict[str, str]]:
    """System prompt, as much recent history as fits the budget, then the message.

    History goes oldest first, so trimming drops the oldest; a window that would
    open with an assistant message drops that too.
    """
    used = estimate_tokens(system_prompt) + estimate_tokens(message)
    start = len(history)
    while start > 0:
        cost = estimate_tokens(history[start - 1].content)
        if used + cost > budget_tokens:
            break
        used += cost
        start -= 1
    if start < len(history) and history[start].role == "assistant":
        start += 1
    return [
        {"role": "system", "content": system_prompt},
        *({"role": m.role, "content": m.content} for m in history[start:]),
        {"role": "user", "content": message},
    ]


@dataclass(frozen=True)
class Turn:
    """One validated request; its history is read once it holds a slot."""

    conversation_id: str
    agent: Agent
    message: str
    stats: TurnStats = field(default_factory=TurnStats, compare=False)


class _Relay:
    """A relay generator whose close() frees the slot even if it never ran.

    A generator that was never started skips its `finally` on close(), and a
    response can be dropped before its first token is asked for.
    """

    def __init__(self, tokens: Iterator[str], upstream: TokenStream, slot: Slot):
        self._tokens = tokens
        self._upstream = upstream
        self._slot = slot

    def __iter__(self) -> Iterator[str]:
        return self._tokens

    def close(self) -> None:
        try:
            self._tokens.close()
        finally:
            self._upstream.close()
            self._slot.release()


class ChatService:
    def __init__(
        self,
        settings: Settings,
        agents: Mapping[str, Agent],
        provider: Provider,
        memory: MemoryStore | None,
        queue: GenerationQueue | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._agents = dict(agents)
        self._provider = provider
        self._memory = memory if settings.enable_memory else None
        self._budget = settings.ctx_tokens - settings.max_tokens
        self._queue = queue or GenerationQueue(
            settings.max_concurrent_generations,
            settings.max_queued_generations,
            settings.max_generation_seconds,
            read_horizon=settings.ollama_timeout + 1,
        )
        self.provider_name = provider.name

    def agent_names(self) -> list[str]:
        return sorted(self._agents)

    def models(self) -> list[str]:
        """Every model some agent uses, for readiness checks."""
        return sorted({agent.model for agent in self._agents.values()})

    def start(self, message: str, agent_name: str, conversation_id: str | None) -> Turn:
        """Resolve the agent and the conversation; memory is not touched yet."""
        agent = self._agents.get(agent_name)
        if agent is None:
            known = ", ".join(self.agent_names())
            raise invalid_field(
                "agent", f"unknown agent {agent_name!r}; known agents: {known}"
            )
        stats = TurnStats(started_at=self._clock())
        return Turn(conversation_id or str(uuid.uuid4()), agent, message, stats)

    def _messages(self, turn: Turn) -> list[dict[str, str]]:
        # Read only once the slot is held: a message that waited behind an
        # earlier one of the same conversation then sees that exchange, and a
        # request refused by the queue has not touched memory.
        history = (
            self._memory.history(turn.conversation_id)
            if self._memory is not None
            else []
        )
        return build_messages(
            turn.agent.system_prompt, history, turn.message, self._budget
        )

    def reply(
        self, turn: Turn, client_present: Callable[[], bool] = always_present
    ) -> Reply:
        """The whole reply; a failure anywhere raises and records nothing, since
        the caller receives an error instead of text. A store that fails to record
        it is a 503 too: a 200 means the exchange is in memory."""
        slot = self._queue.acquire(client_present)
        try:
            messages = self._messages(turn)
            with slot.bounded():
                reply = self._provider.complete(turn.agent.model, messages)
            stats = turn.stats
            stats.ended_at = self._clock()
            stats.first_token_at = reply.first_token_at
            stats.usage, stats.reply, stats.ending = reply.usage, reply.text, endings.OK
            self._record(turn, reply.text)
        finally:
            slot.release()
        return reply

    def stream(
        self, turn: Turn, client_present: Callable[[], bool] = always_present
    ) -> Iterator[str]:
        """A primed stream: failures before the first token raise here. The
        slot is held until the stream ends, fails, runs out of time, or its
        client goes (gunicorn then closes the iterator)."""
        slot = self._queue.acquire(client_present)
        try:
            messages = self._messages(turn)
            with slot.bounded():
                upstream = self._provider.stream(turn.agent.model, messages)
        except BaseException:
            slot.release()
            raise
        # The provider returns once the first text arrived (or none will).
        turn.stats.first_token_at = self._clock()
        return _Relay(self._relay(turn, upstream, slot), upstream, slot)

    def _relay(self, turn: Turn, upstream: TokenStream, slot: Slot) -> Iterator[str]:
        # A token counts as seen once the server asks for the next one, i.e.
        # after writing it; a client that left is noticed at that write. The
        # deadline is armed only while waiting on the model, never at `yield`.
        seen: list[str] = []
        stats = turn.stats
        tokens = iter(upstream)
        try:
            while True:
                token = slot.next_within(tokens)
                if token is None:
                    break
                yield token
                seen.append(token)
            stats.ending = endings.OK
        except GeneratorExit:
            stats.ending = endings.CLIENT_GONE
            log.info(
                "client left conversation %s after %d chars; upstream closed",
                turn.conversation_id,
                sum(map(len, seen)),
            )
            raise
        except ProviderError as exc:
            stalled = isinstance(exc, StreamStalled | GenerationTimeout)
            stats.ending = endings.TIMEOUT if stalled else endings.UPSTREAM_ERROR
            log.warning(
                "stream of conversation %s cut after %d chars: %s",
                turn.conversation_id,
                sum(map(len, seen)),
                exc.detail,
            )
            raise StreamAborted(str(exc.detail)) from exc
        except Exception:
            stats.ending = endings.ERROR
            raise
        finally:
            upstream.close()
            stats.ended_at = self._clock()
            stats.chunks, stats.usage = len(seen), upstream.usage
            stats.reply = "".join(seen)
            try:
                self._record(turn, stats.reply)
            except MemoryUnavailable as exc:
                # The 200 and the text went out already: all that is left is to say
                # the exchange was not stored.
                log.warning("exchange of %s not stored: %s", turn.conversation_id, exc)
            finally:
                slot.release()

    def _record(self, turn: Turn, reply: str) -> None:
        if self._memory is not None and reply:
            self._memory.append_exchange(turn.conversation_id, turn.message, reply)
