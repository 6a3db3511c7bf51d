"""The chat service: the one place that composes agent, memory and provider."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
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
from piagent.events import Done, Event, EventStream, Tokens, Upstream
from piagent.generation_queue import (
    GenerationQueue,
    QueueObserver,
    Route,
    Slot,
    always_present,
)
from piagent.memory import Conversation, MemoryStore, Message
from piagent.memory.window import fit_start
from piagent.providers import (
    ChatMessage,
    Options,
    Provider,
    Reply,
    Thought,
    TokenStream,
    ToolOffer,
    Usage,
)
from piagent.providers.hosts import HostRouter, error_kind, host_failure
from piagent.settings import Settings
from piagent.stats import Ending, TurnStats
from piagent.tool_loop import ToolLoop, render

log = logging.getLogger("piagent")
T = TypeVar("T")

# Tokens are estimated from UTF-8 bytes at 3 per token, plus a few per message for
# the chat template's role markers: real tokenizers average about 4 characters
# per token in English, so this errs on the side of sending less history.
BYTES_PER_TOKEN = 3
TOKENS_PER_MESSAGE = 4


def estimate_tokens(text: str) -> int:
    return -(-len(text.encode("utf-8")) // BYTES_PER_TOKEN) + TOKENS_PER_MESSAGE


def message_tokens(message: Message) -> int:
    """A stored message's estimate: its text, and its tool calls' names and
    arguments, which the model reads too."""
    if not message.tool_calls:
        return estimate_tokens(message.content)
    calls = "".join(call.name + call.arguments for call in message.tool_calls)
    return estimate_tokens(message.content + calls)


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
        [message_tokens(m) for m in history],
        estimate_tokens(system_prompt) + estimate_tokens(message),
        budget_tokens,
        max_turns,
        trim_to,
    )


def memory_key(owner: str | None, conversation_id: str) -> str:
    """What the memory store knows a conversation by: `<owner>/<id>` with API
    keys, so owners never see each other's conversations, whatever ids they
    pick; the bare id without keys (one owner), as before owners existed.
    Neither part can hold a `/` (owner names and ids are validated), so no
    two owners' keys can meet."""
    return f"{owner}/{conversation_id}" if owner else conversation_id


def build_messages(
    system_prompt: str, history: Sequence[Message], message: str
) -> list[ChatMessage]:
    """System prompt, history oldest first, then the message, exactly as given:
    nothing that changes from request to request (a time, an id) goes in, so
    the next turn's prompt starts with this one's and the model's prompt cache
    is reused. Tool calls and results render as the tool loop sent them."""
    return [
        {"role": "system", "content": system_prompt},
        *(
            render(m)
            if m.role == "tool" or m.tool_calls
            else {"role": m.role, "content": m.content}
            for m in history
        ),
        {"role": "user", "content": message},
    ]


@dataclass(frozen=True)
class Turn:
    """One validated request; its history is read once it holds a slot.

    A stateless turn (the OpenAI endpoint) brings its own `history`, the
    client's messages, and the client's own tools, if any (`client_tools`); it
    is never recorded, and the agent's tools are not offered.
    `conversation_id` is the id the client sees; `owner` the key owner the
    conversation belongs to.
    """

    conversation_id: str
    agent: Agent
    message: str
    stats: TurnStats = field(default_factory=TurnStats, compare=False)
    history: tuple[ChatMessage, ...] | None = None
    options: Options | None = None
    owner: str | None = None
    client_tools: ToolOffer | None = None

    @property
    def stateless(self) -> bool:
        return self.history is not None

    @property
    def memory_key(self) -> str:
        return memory_key(self.owner, self.conversation_id)


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
        self._max_tool_steps = settings.max_tool_steps
        # Built once per agent: every request offers the same bytes.
        self._offers = {
            name: ToolOffer(agent.tools.definitions)
            for name, agent in self._agents.items()
            if agent.tools is not None
        }
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

    def agent(self, name: str) -> Agent | None:
        """The agent of that name, or None."""
        return self._agents.get(name)

    def _known(self) -> str:
        return ", ".join(self.agent_names())

    def models(self) -> list[str]:
        """Every model some agent uses, for readiness checks."""
        return sorted({agent.model for agent in self._agents.values()})

    def start(
        self,
        message: str,
        agent_name: str,
        conversation_id: str | None,
        owner: str | None = None,
    ) -> Turn:
        """Resolve the agent and the owner's conversation; memory is not
        touched yet. Another owner's conversation of the same id is not this
        one: the turn starts the owner's own."""
        agent = self._agents.get(agent_name)
        if agent is None:
            raise invalid_field(
                "agent", f"unknown agent {agent_name!r}; known agents: {self._known()}"
            )
        stats = TurnStats(started_at=self._clock())
        cid = conversation_id or str(uuid.uuid4())
        return Turn(cid, agent, message, stats, owner=owner)

    def conversation(
        self, conversation_id: str, owner: str | None = None
    ) -> Conversation | None:
        """The owner's stored conversation as the client names it; None when
        memory is off, or it is unknown, expired or another owner's."""
        if self._memory is None:
            return None
        found = self._memory.conversation(memory_key(owner, conversation_id))
        return (
            None if found is None else replace(found, conversation_id=conversation_id)
        )

    def forget(self, conversation_id: str, owner: str | None = None) -> None:
        """Forget the owner's conversation; another owner's is left alone."""
        if self._memory is not None:
            self._memory.forget(memory_key(owner, conversation_id))

    def start_stateless(
        self,
        agent_name: str,
        messages: Sequence[ChatMessage],
        options: Options,
        turn_id: str,
        tools: ToolOffer | None = None,
    ) -> Turn:
        """A turn whose history is the client's `messages`, as given (the agent's
        system prompt goes first), with the client's `tools`; it must fit the
        context window, since trimming it would answer a different conversation
        than the one sent. `max_tokens` above MAX_TOKENS is lowered to it."""
        agent = self._agents.get(agent_name)
        if agent is None:
            raise UnknownModel(
                f"The model {agent_name!r} does not exist; piagent's models are its "
                f"agents: {self._known()}"
            )
        max_tokens = min(options.max_tokens or self._max_tokens, self._max_tokens)
        # The window the model server is asked for: CTX_TOKENS, or the
        # client's num_ctx where the web layer lets it choose.
        ctx_tokens = options.num_ctx or self._ctx_tokens
        needed = estimate_tokens(agent.system_prompt) + sum(
            estimate_tokens(_text_of(m)) for m in messages
        )
        if tools is not None:
            needed += estimate_tokens(json.dumps(tools.definitions))
        if needed > ctx_tokens - max_tokens:
            raise ContextTooLong(
                f"the messages need about {needed} tokens, more than the "
                f"{ctx_tokens - max_tokens} that a context of {ctx_tokens} tokens "
                f"(CTX_TOKENS={self._ctx_tokens}) leaves beside a reply of "
                f"{max_tokens}; send fewer or shorter messages"
            )
        last = messages[-1]["content"] if messages else ""
        return Turn(
            turn_id,
            agent,
            last,
            TurnStats(started_at=self._clock()),
            history=tuple(messages),
            options=replace(options, max_tokens=max_tokens),
            client_tools=tools,
        )

    def _offer(self, turn: Turn) -> ToolOffer | None:
        """The tools a turn's model calls are offered: a /v1 client's own, or
        the agent's (for /chat)."""
        if turn.stateless:
            return turn.client_tools
        return self._offers.get(turn.agent.name)

    def _looping(self, turn: Turn) -> bool:
        """Whether piagent runs tools in this turn: /chat with a tool agent."""
        return not turn.stateless and turn.agent.tools is not None

    def routing_key(self, turn: Turn) -> str | None:
        """What pins a turn to a model host: its conversation's storage key
        (the owner's, opaque here); None for a stateless turn, which may go
        anywhere."""
        return None if turn.stateless else turn.memory_key

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
        client_present: Callable[[], bool] | None,
    ) -> T:
        """`call` with the provider of the slot's host, within the deadline.

        With several hosts, a failure of the host before any text (see
        host_failure) takes it down and the call is made once more on the
        next host of the turn's route: nothing has been sent to the client.
        A later round of a tool loop (`client_present` None) stays on its
        host, since the client has seen the earlier rounds' events.
        """
        model = turn.agent.model
        try:
            with slot.bounded():
                return self._hosts.attempt(slot.host, model, call)
        except ProviderError as exc:
            if client_present is None or not (slot.movable and host_failure(exc)):
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

    def _streamer(
        self, turn: Turn, messages: list[ChatMessage]
    ) -> Callable[[Provider], TokenStream]:
        """A call that starts the turn's generation on a host's provider,
        with the turn's tools if it offers any."""
        model, options, offer = turn.agent.model, turn.options, self._offer(turn)
        if offer is None:  # as every provider was asked before tools
            return lambda provider: provider.stream(model, messages, options)
        return lambda provider: provider.stream(model, messages, options, offer)

    def _completer(
        self, turn: Turn, messages: list[ChatMessage]
    ) -> Callable[[Provider], Reply]:
        """The same for a whole reply."""
        model, options, offer = turn.agent.model, turn.options, self._offer(turn)
        if offer is None:
            return lambda provider: provider.complete(model, messages, options)
        return lambda provider: provider.complete(model, messages, options, offer)

    def _messages(self, turn: Turn) -> list[ChatMessage]:
        system = {"role": "system", "content": turn.agent.system_prompt}
        if turn.history is not None:
            return [system, *turn.history]
        # Read only once the slot is held: a message that waited behind an
        # earlier one of the same conversation then sees that exchange, and a
        # request refused by the queue has not touched memory.
        if self._memory is None:
            return build_messages(turn.agent.system_prompt, [], turn.message)
        history = self._memory.history(turn.memory_key)
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
            self._memory.cut(turn.memory_key, len(history) - start)
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
            if self._looping(turn):
                return self._reply_with_tools(turn, slot, messages, client_present)
            reply = self._on_host(
                slot, turn, self._completer(turn, messages), client_present
            )
            stats = turn.stats
            stats.ended_at = self._clock()
            stats.first_token_at = reply.first_token_at
            stats.usage, stats.reply, stats.ending = reply.usage, reply.text, Ending.OK
            stats.calls = reply.tool_calls
            self._record(turn, reply.text)
        finally:
            slot.release()
        return reply

    def _reply_with_tools(
        self,
        turn: Turn,
        slot: Slot,
        messages: list[ChatMessage],
        client_present: Callable[[], bool],
    ) -> Reply:
        """The JSON reply of a tool agent: the whole loop, then the text of
        every round; stored only once it all succeeded."""
        stats = turn.stats
        first = self._streamer(turn, messages)
        upstream = Upstream.start(
            lambda: self._on_host(slot, turn, first, client_present), None
        )
        loop = self._tool_loop(turn, slot, messages, False, upstream)
        upstream = loop.upstream
        assert upstream.stream is not None
        stats.first_token_at = upstream.stream.first_token_at
        try:
            for _ in loop.run(upstream.stream):
                pass
        finally:
            loop.upstream.close()
        stats.ended_at = self._clock()
        stats.chunks = len(loop.seen)
        stats.reply, stats.ending = "".join(loop.seen), loop.ending
        self._record(turn, loop.recorded())
        return Reply(
            stats.reply, turn.agent.model, stats.usage or Usage(), stats.first_token_at
        )

    def _tool_loop(
        self,
        turn: Turn,
        slot: Slot,
        messages: list[ChatMessage],
        pings: bool,
        upstream: Upstream,
    ) -> ToolLoop:
        """The loop of a tool agent's turn, whose first model call is
        `upstream`; the later ones stay on the slot's host."""

        def open_next(sent: list[ChatMessage]) -> Upstream:
            call = self._streamer(turn, sent)
            return Upstream.start(
                lambda: self._on_host(slot, turn, call, None),
                self._ping_seconds if pings else None,
            )

        assert turn.agent.tools is not None
        return ToolLoop(
            turn.agent.tools,
            self._max_tool_steps,
            messages,
            slot,
            turn.stats,
            open_next,
            upstream,
            self._ping_seconds,
        )

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
            call = self._streamer(turn, messages)

            def start() -> TokenStream:
                return self._on_host(slot, turn, call, client_present)

            upstream = Upstream.start(start, self._prime_seconds if pings else None)
        except BaseException:
            slot.release()
            raise
        if upstream.stream is not None:
            turn.stats.first_token_at = self._clock()
        loop = None
        if self._looping(turn):
            loop = self._tool_loop(turn, slot, messages, pings, upstream)

        def release() -> None:
            try:
                (loop.upstream if loop is not None else upstream).close()
            finally:
                slot.release()

        events = self._relay(turn, upstream, slot, loop)
        if loop is not None and not pings:
            # text/plain writes nothing but text, so its status can wait for
            # the first: tool rounds run now, and a failure in them still
            # gets its real status, as before the first token of any turn.
            events = _after_tool_rounds(events)
        return EventStream(events, release)

    def _relay(
        self, turn: Turn, upstream: Upstream, slot: Slot, loop: ToolLoop | None
    ) -> Iterator[Event]:
        # A token counts as seen once the server asks for the next one, i.e.
        # after writing it; a client that left is noticed at that write. The
        # deadline is armed only while waiting on the model, never at `yield`.
        seen: list[str] = [] if loop is None else loop.seen
        stats = turn.stats
        finished = False
        try:
            stream = upstream.stream
            if stream is None:
                # The 200 is committed now: a first ping sends it at once.
                stream = yield from upstream.pinged(self._ping_seconds)
                stats.first_token_at = self._clock()
            if loop is None:
                batches = stream.batches()
                while True:
                    batch = slot.next_within(batches)
                    if batch is None:
                        break
                    yield Tokens(batch)
                    seen.extend(batch)
                stats.ending = Ending.OK
            else:
                yield from loop.run(stream)
                stats.ending = loop.ending
            self._finish(turn, upstream, seen, loop)
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
                (loop.upstream if loop is not None else upstream).close()
                if not finished:
                    self._finish(turn, upstream, seen, loop)
            finally:
                slot.release()

    def _finish(
        self, turn: Turn, upstream: Upstream, seen: list[str], loop: ToolLoop | None
    ) -> None:
        """Fill in the turn's facts and record what the client saw."""
        stats = turn.stats
        stats.ended_at = self._clock()
        stats.chunks = len(seen)
        if turn.options is not None and turn.options.stream_thinking:
            seen = [chunk for chunk in seen if type(chunk) is not Thought]
            stats.chunks = len(seen)
        stats.reply = "".join(seen)
        replies: str | list[Message] = stats.reply
        if loop is not None:
            replies = loop.recorded()  # the loop added up the rounds' usage
        elif upstream.stream is not None:
            stats.usage = upstream.stream.usage
            if turn.client_tools is not None:  # calls for a /v1 client to run
                stats.calls = tuple(upstream.stream.tool_calls)
        try:
            self._record(turn, replies)
        except MemoryUnavailable as exc:
            # The 200 and the text went out already: all that is left is to say
            # the exchange was not stored.
            log.warning("exchange of %s not stored: %s", turn.conversation_id, exc)

    def _record(self, turn: Turn, replies: str | list[Message]) -> None:
        """Store the exchange: the reply's text, or (a tool agent's turn) every
        message after the user's; nothing if there is none."""
        if self._memory is not None and replies and not turn.stateless:
            self._memory.append_exchange(turn.memory_key, turn.message, replies)


def _after_tool_rounds(events: Iterator[Event]) -> Iterator[Event]:
    """The same events, those before the first text (or the end) pulled now:
    errors among them are raised here, to the caller."""
    held: list[Event] = []
    for event in events:
        held.append(event)
        if isinstance(event, Tokens | Done):
            break

    def replayed() -> Iterator[Event]:
        try:
            yield from held
            yield from events
        finally:
            close = getattr(events, "close", None)  # a generator's
            if close is not None:
                close()

    return replayed()


def _text_of(message: ChatMessage) -> str:
    """What a client's message costs in the context: its text and tool calls."""
    calls = message.get("tool_calls")
    if not calls:
        return str(message.get("content") or "")
    return str(message.get("content") or "") + json.dumps(calls)
