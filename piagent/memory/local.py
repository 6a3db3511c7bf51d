"""The in-process store: an LRU-ordered dict of short message tuples behind one lock."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from piagent.memory.base import (
    Conversation,
    Message,
    drop_leading_reply,
    exchange_messages,
)
from piagent.memory.window import append_start, kept_from, sliding


class _Conversation:
    """A tuple, not a deque: a deque's first block alone is about 600 bytes, and
    with hundreds of conversations that is RAM the model could use."""

    __slots__ = ("messages", "created", "touched")

    def __init__(self, now: float) -> None:
        self.messages: tuple[Message, ...] = ()
        self.created = now
        self.touched = now


class LocalMemoryStore:
    """Lives as long as the worker process; every operation is O(1) amortised.

    The dict is kept in least-recently-used order, which is also idle order, so
    expiry only ever looks at the front instead of scanning every conversation.
    Under gevent the lock is patched into a greenlet lock; nothing inside it
    blocks, so it is never held across a switch.
    """

    def __init__(
        self,
        max_turns: int,
        ttl_seconds: float,
        max_conversations: int,
        clock: Callable[[], float] = time.time,
        trim_to: int | None = None,
    ) -> None:
        self._max_turns = max_turns
        self._trim_to = sliding(max_turns) if trim_to is None else trim_to
        self._ttl = ttl_seconds
        self._max_conversations = max_conversations
        self._clock = clock
        self._lock = threading.Lock()
        self._conversations: OrderedDict[str, _Conversation] = OrderedDict()

    def describe(self) -> str:
        return "in-process (lost on restart, one per worker)"

    def history(self, conversation_id: str) -> list[Message]:
        with self._lock:
            now = self._clock()
            self._expire(now)
            conversation = self._conversations.get(conversation_id)
            if conversation is None:
                return []
            self._touch(conversation_id, conversation, now)
            messages = list(conversation.messages)
        return drop_leading_reply(messages)

    def conversation(self, conversation_id: str) -> Conversation | None:
        with self._lock:
            self._expire(self._clock())
            found = self._conversations.get(conversation_id)
            if found is None:
                return None
            return Conversation(
                conversation_id,
                drop_leading_reply(list(found.messages)),
                found.created,
                found.touched,
                found.touched + self._ttl,
            )

    def append_exchange(
        self, conversation_id: str, user: str, assistant: str | Sequence[Message]
    ) -> None:
        if self._max_turns == 0:
            return
        with self._lock:
            now = self._clock()
            self._expire(now)
            conversation = self._conversations.get(conversation_id)
            if conversation is None:
                conversation = _Conversation(now)
                self._conversations[conversation_id] = conversation
                while len(self._conversations) > self._max_conversations:
                    self._conversations.popitem(last=False)
            self._touch(conversation_id, conversation, now)
            exchange = exchange_messages(user, assistant)
            window = conversation.messages
            start: int | None = 0
            # append_start's own first test, so the common append, which needs
            # no cut, builds no list of roles.
            if len(window) + len(exchange) > self._max_turns:
                roles = [m.role for m in window]
                start = append_start(
                    roles, len(exchange), self._max_turns, self._trim_to
                )
            conversation.messages = (
                () if start is None else (*window[start:], *exchange)
            )

    def cut(self, conversation_id: str, keep: int) -> None:
        with self._lock:
            conversation = self._conversations.get(conversation_id)
            if conversation is None:
                return
            window = conversation.messages
            start = kept_from([m.role for m in window], keep)
            conversation.messages = window[start:]

    def forget(self, conversation_id: str) -> None:
        with self._lock:
            self._conversations.pop(conversation_id, None)

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._conversations)

    def _touch(
        self, conversation_id: str, conversation: _Conversation, now: float
    ) -> None:
        conversation.touched = now
        self._conversations.move_to_end(conversation_id)

    def _expire(self, now: float) -> None:
        conversations = self._conversations
        while conversations:
            oldest = next(iter(conversations.values()))
            if now - oldest.touched < self._ttl:
                return
            conversations.popitem(last=False)
