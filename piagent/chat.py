"""The chat service: the one place that composes agent, memory and provider."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from piagent.agents import Agent
from piagent.errors import (
    ContextTooLong,
    MemoryUnavailable,
    ProviderError,
    ProviderTimeout,
    StreamStalled,
    UnknownModel,
    invalid_field,
)
from piagent.events import PING, Done, Event, EventStream, Tokens, Upstream
from piagent.generation_queue import (
    GenerationQueue,
    QueueObserver,
    Route,
    Slot,
    always_present,
)
from piagent.memory import MemoryStore, Message
from piagent.memory.window import fit_start
from piagent.providers import Options, Provider, Reply, TokenStream
from piagent.providers.hosts import HostRouter, error_kind, host_failure
from piagent.settings import Settings
from piagent.stats import Ending, TurnStats

log = logging.getLogger("piagent")
T = TypeVar("T")

# Tokens are estimated from UTF-8 bytes at 3 per token, plus a few per message for
# the chat template's role markers: real tokenizers average about 4 characters
# per token in English, so this errs on the side of sending less history.
BYTES_PER_TOKEN = 3
TOKENS_PER_MESSAGE = 4


def estimate_tokens(text: str) -> int:
    return -(-len(text.encode("utf-8")) // BYTES_PER_TOKEN) + TOKENS_PER_MESSAGE


def history_start(
    system_prompt: str,
    history: Sequence[Message],
    message: str,
    budget_tokens: int,
    max_turns: int,
    trim_to: int,
) -> int:
    """Where the history sent with `message` starts: 0 (all of it) while it is
    at most `max_turns` messages and fits the budget beside the system prompt
    and the message; else the start of a cut in blocks (piagent.memory.window):
    whole exchanges down to `trim_to` messages, fewer if that still does not
    fit."""
    return fit_start(
        [m.role for m in history],
        [estimate_tokens(m.content) for m in history],
        estimate_tokens(system_prompt) + estimate_tokens(message),
        budget_tokens,
        max_turns,
        trim_to,
    )


def build_messages(
    system_prompt: str, history: Sequence[Message], message: str
) -> list[dict[str, str]]:
    """System prompt, history oldest first, then the message, exactly as given:
    nothing that changes from request to request (a time, an id) goes in, so
    the next turn's prompt starts with this one's and the model's prompt cache
    is reused."""
    return [
        {"role": "system", "content": system_prompt},
        *({"role": m.role, "content": m.content} for m in history),
        {"role": "user", "content": message},
    ]


@dataclass(frozen=True)
class Turn:
    """One validated request; its history is read once it holds a slot.

    A stateless turn (the OpenAI endpoint) brings its own `history`, the
    client's messages, and is never recorded.
    """

    conversation_id: str
    agent: Agent
    message: str
    stats: TurnStats = field(default_factory=TurnStats, compare=False)
    history: tuple[dict[str, str], ...] | None = None
    options: Options | None = None

    @property
    def stateless(self) -> bool:
        return self.history is not None


class ChatService:
    """Resolves agents, reads history, builds the message list, calls the
    provider and records the exchange: the only place that composes."""

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
        # Every call to the model goes through the host router, which is the
        # provider itself with several hosts (app.build_provider).
        self._hosts = (
            provider if isinstance(provider, HostRouter) else HostRouter([provider])
        )
        # None when ENABLE_MEMORY is off: build_memory decides that, once.
        self._memory = memory
        self._ctx_tokens = settings.ctx_tokens
        self._max_tokens = settings.max_tokens
        self._budget = settings.ctx_tokens - settings.max_tokens
        self._max_turns = settings.memory_max_turns
        self._trim_to = settings.memory_trim_to
        self._prime_seconds = settings.stream_prime_seconds
        self._ping_seconds = settings.stream_ping_seconds
        self._queue = queue or GenerationQueue(
            settings.max_concurrent_generations,
            settings.max_queued_generations,
            settings.max_generation_seconds,
            read_horizon=settings.model_timeout + 1,
            max_wait=settings.max_queue_wait_seconds,
        )
        self.provider_name = provider.name

    def observe(
        self,
        queue: QueueObserver,
        host: Callable[[str, bool], None],
        error: Callable[[str], None],
    ) -> None:
        """Report slots and waiters, hosts going up and down, and the model
        server's failures to these callbacks (piagent.metrics)."""
        self._queue.observer = queue
        self._hosts.on_host = host
        self._hosts.on_error = error
        for url in self._hosts.urls:
            host(url, self._hosts.up(url))
            queue(url, 0, 0)

    def agent_names(self) -> list[str]:
        return sorted(self._agents)

    def _known(self) -> str:
        return ", ".join(self.agent_names())

    def models(self) -> list[str]:
        """Every model some agent uses, for readiness checks."""
        return sorted({agent.model for agent in self._agents.values()})

    def start(self, message: str, agent_name: str, conversation_id: str | None) -> Turn:
        """Resolve the agent and the conversation; memory is not touched yet."""
        agent = self._agents.get(agent_name)
        if agent is None:
            raise invalid_field(
                "agent", f"unknown agent {agent_name!r}; known agents: {self._known()}"
            )
        stats = TurnStats(started_at=self._clock())
        return Turn(conversation_id or str(uuid.uuid4()), agent, message, stats)

    def start_stateless(
        self,
        agent_name: str,
        messages: Sequence[dict[str, str]],
        options: Options,
        turn_id: str,
    ) -> Turn:
        """A turn whose history is the client's `messages`, as given (the agent's
        system prompt goes first); it must fit the context window, since
        trimming it would answer a different conversation than the one sent.
        `max_tokens` above MAX_TOKENS is lowered to it."""
        agent = self._agents.get(agent_name)
        if agent is None:
            raise UnknownModel(
                f"The model {agent_name!r} does not exist; piagent's models are its "
                f"agents: {self._known()}"
            )
        max_tokens = min(options.max_tokens or self._max_tokens, self._max_tokens)
        needed = estimate_tokens(agent.system_prompt) + sum(
            estimate_tokens(m["content"]) for m in messages
        )
        if needed > self._ctx_tokens - max_tokens:
            raise ContextTooLong(
                f"the messages need about {needed} tokens, more than the "
                f"{self._ctx_tokens - max_tokens} that CTX_TOKENS={self._ctx_tokens} "
                f"leaves beside a reply of {max_tokens}; send fewer or shorter "
                "messages"
            )
        last = messages[-1]["content"] if messages else ""
        return Turn(
            turn_id,
            agent,
            last,
            TurnStats(started_at=self._clock()),
            history=tuple(messages),
            options=Options(temperature=options.temperature, max_tokens=max_tokens),
        )

    def routing_key(self, turn: Turn) -> str | None:
        """What pins a turn to a model host: its conversation's storage key
        (opaque here); None for a stateless turn, which may go anywhere."""
        return None if turn.stateless else turn.conversation_id

    def _route(self, turn: Turn) -> Route | None:
        """The turn's hosts for the queue; None with one host."""
        hosts = self._hosts
        if hosts.single:
            return None
        key, model = self.routing_key(turn), turn.agent.model
        return Route(lambda avoid: hosts.order(key, model, avoid), key is None)

    def _on_host(
        self,
        slot: Slot,
        turn: Turn,
        call: Callable[[Provider], T],
        client_present: Callable[[], bool],
    ) -> T:
        """`call` with the provider of the slot's host, within the deadline.

        With several hosts, a failure of the host before any text (see
        host_failure) takes it down and the call is made once more on the
        next host of the turn's route: nothing has been sent to the client.
        """
        model = turn.agent.model
        try:
            with slot.bounded():
                return self._hosts.attempt(slot.host, model, call)
        except ProviderError as exc:
            if not (slot.movable and host_failure(exc)):
                raise
            failed = slot.host
        slot.move(client_present)
        log.info(
            "conversation %s moved from %s to %s",
            turn.conversation_id,
            failed,
            slot.host,
        )
        with slot.bounded():
            return self._hosts.attempt(slot.host, model, call)

    def _messages(self, turn: Turn) -> list[dict[str, str]]:
        system = {"role": "system", "content": turn.agent.system_prompt}
        if turn.history is not None:
            return [system, *turn.history]
        # Read only once the slot is held: a message that waited behind an
        # earlier one of the same conversation then sees that exchange, and a
        # request refused by the queue has not touched memory.
        if self._memory is None:
            return build_messages(turn.agent.system_prompt, [], turn.message)
        history = self._memory.history(turn.conversation_id)
        start = history_start(
            turn.agent.system_prompt,
            history,
            turn.message,
            self._budget,
            self._max_turns,
            self._trim_to,
        )
        if start:
            # Persisted before the model is asked, so the next turn, in any
            # worker, starts from the window this prompt was built from.
            self._memory.cut(turn.conversation_id, len(history) - start)
        return build_messages(turn.agent.system_prompt, history[start:], turn.message)

    def reply(
        self, turn: Turn, client_present: Callable[[], bool] = always_present
    ) -> Reply:
        """The whole reply; a failure anywhere raises and records nothing, since
        the caller receives an error instead of text. A store that fails to record
        it is a 503 too: a 200 means the exchange is in memory."""
        slot = self._queue.acquire(client_present, self._route(turn))
        try:
            messages = self._messages(turn)
            model, options = turn.agent.model, turn.options
            reply = self._on_host(
                slot,
                turn,
                lambda provider: provider.complete(model, messages, options),
                client_present,
            )
            stats = turn.stats
            stats.ended_at = self._clock()
            stats.first_token_at = reply.first_token_at
            stats.usage, stats.reply, stats.ending = reply.usage, reply.text, Ending.OK
            self._record(turn, reply.text)
        finally:
            slot.release()
        return reply

    def stream(
        self,
        turn: Turn,
        client_present: Callable[[], bool] = always_present,
        pings: bool = False,
    ) -> EventStream:
        """The turn's events, primed: failures before the first token raise here.

        With `pings`, priming is bounded by STREAM_PRIME_SECONDS: a model still
        silent then is awaited after the caller committed its 200, with a Ping
        every STREAM_PING_SECONDS, and a failure in that wait is raised from
        the iteration like any later one. The slot is held until the stream
        ends, fails, runs out of time, or its client goes (the server then
        closes the stream).
        """
        slot = self._queue.acquire(client_present, self._route(turn))
        try:
            messages = self._messages(turn)
            model, options = turn.agent.model, turn.options

            def start() -> TokenStream:
                return self._on_host(
                    slot,
                    turn,
                    lambda provider: provider.stream(model, messages, options),
                    client_present,
                )

            upstream = Upstream.start(start, self._prime_seconds if pings else None)
        except BaseException:
            slot.release()
            raise
        if upstream.stream is not None:
            turn.stats.first_token_at = self._clock()

        def release() -> None:
            try:
                upstream.close()
            finally:
                slot.release()

        return EventStream(self._relay(turn, upstream, slot), release)

    def _relay(self, turn: Turn, upstream: Upstream, slot: Slot) -> Iterator[Event]:
        # A token counts as seen once the server asks for the next one, i.e.
        # after writing it; a client that left is noticed at that write. The
        # deadline is armed only while waiting on the model, never at `yield`.
        seen: list[str] = []
        stats = turn.stats
        finished = False
        try:
            stream = upstream.stream
            if stream is None:
                # The 200 is committed now: a first ping sends it at once.
                yield PING
                while not upstream.wait(self._ping_seconds):
                    yield PING
                stream = upstream.resolve()
                stats.first_token_at = self._clock()
            batches = stream.batches()
            while True:
                batch = slot.next_within(batches)
                if batch is None:
                    break
                yield Tokens(batch)
                seen.extend(batch)
            stats.ending = Ending.OK
            self._finish(turn, upstream, seen)
            finished = True
            yield Done(stats)
        except GeneratorExit:
            if not finished:
                stats.ending = Ending.CLIENT_GONE
                log.info(
                    "client left conversation %s after %d chars; upstream closed",
                    turn.conversation_id,
                    sum(map(len, seen)),
                )
            raise
        except ProviderError as exc:
            stalled = isinstance(exc, StreamStalled | ProviderTimeout)
            stats.ending = Ending.TIMEOUT if stalled else Ending.UPSTREAM_ERROR
            stats.upstream_error = error_kind(exc)
            log.warning(
                "stream of conversation %s cut after %d chars: %s",
                turn.conversation_id,
                sum(map(len, seen)),
                exc.detail,
            )
            raise
        except Exception:
            stats.ending = Ending.ERROR
            raise
        finally:
            try:
                upstream.close()
                if not finished:
                    self._finish(turn, upstream, seen)
            finally:
                slot.release()

    def _finish(self, turn: Turn, upstream: Upstream, seen: list[str]) -> None:
        """Fill in the turn's facts and record what the client saw."""
        stats = turn.stats
        stats.ended_at = self._clock()
        stats.chunks = len(seen)
        stats.usage = upstream.stream.usage if upstream.stream is not None else None
        stats.reply = "".join(seen)
        try:
            self._record(turn, stats.reply)
        except MemoryUnavailable as exc:
            # The 200 and the text went out already: all that is left is to say
            # the exchange was not stored.
            log.warning("exchange of %s not stored: %s", turn.conversation_id, exc)

    def _record(self, turn: Turn, reply: str) -> None:
        if self._memory is not None and reply and not turn.stateless:
            self._memory.append_exchange(turn.conversation_id, turn.message, reply)
