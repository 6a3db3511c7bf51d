"""The contract every memory store keeps: in-process, SQLite and Redis alike."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol


class StoredCall(NamedTuple):
    """A tool call of an assistant message: its id, the tool, the arguments
    as the JSON text the model wrote."""

    id: str
    name: str
    arguments: str


class Message(NamedTuple):
    """One stored message: `user`, `assistant` or `tool`, and its text.

    An assistant message may carry the tool calls the model made; a `tool`
    message is a call's result, with the call's id and the tool's name.
    """

    role: str
    content: str
    tool_calls: tuple[StoredCall, ...] = ()
    tool_call_id: str = ""
    name: str = ""

    def extra(self) -> dict[str, Any] | None:
        """What a store keeps beside role and content; None for a plain message."""
        if self.tool_calls:
            return {"tool_calls": [list(call) for call in self.tool_calls]}
        if self.role == "tool":
            return {"tool_call_id": self.tool_call_id, "name": self.name}
        return None

    def extra_json(self) -> str | None:
        extra = self.extra()
        return None if extra is None else json.dumps(extra, ensure_ascii=False)

    @classmethod
    def restored(cls, role: str, content: str, extra: Any = None) -> Message:
        """A stored message back from its role, content and `extra()`."""
        if not extra:
            return cls(role, content)
        if isinstance(extra, str):
            extra = json.loads(extra)
        calls = tuple(StoredCall(*call) for call in extra.get("tool_calls", ()))
        return cls(
            role,
            content,
            calls,
            extra.get("tool_call_id", ""),
            extra.get("name", ""),
        )


def exchange_messages(user: str, replies: str | Sequence[Message]) -> list[Message]:
    """An exchange: the user's message, then the reply, or the messages that
    followed it (assistant messages with tool calls, tool results, the reply)."""
    if isinstance(replies, str):
        return [Message("user", user), Message("assistant", replies)]
    return [Message("user", user), *replies]


@dataclass(frozen=True)
class Conversation:
    """A stored conversation as the endpoints show it; times are Unix seconds."""

    conversation_id: str
    messages: list[Message]
    created_at: float
    updated_at: float
    expires_at: float


class MemoryStore(Protocol):
    """Per-conversation window of at most `max_turns` messages, cut in blocks.

    - The window is append-only while it fits, so consecutive turns render to
      prompts that extend each other and the model server's prompt cache stays
      warm. Its rules are in piagent.memory.window.
    - `append_exchange` stores a user message and the assistant's reply together
      (the reply's text, or every message that followed: assistant messages
      with tool calls, tool results and the reply), so concurrent requests on
      one conversation (from any thread, greenlet or process sharing the
      store) never lose or interleave halves. If the window
      would then exceed `max_turns` messages, the oldest whole exchanges are
      dropped first, down to `trim_to` messages (fewer if the exchange is long),
      in the same atomic step; an exchange longer than `max_turns` empties the
      window and is not kept either.
    - `cut` drops the oldest whole exchanges so that at most `keep` messages
      remain, atomically: the chat service calls it when a turn's history does
      not fit the token budget, with the window it rendered (`fit_start`), so
      the cut it made for that turn is the window every worker reads next, also
      after a restart. A cut never splits an exchange: the window starts at a
      user message. Cutting is idempotent, commutes with a concurrent append
      (which only adds at the end), is not activity, and cutting an unknown
      conversation is no error.
    - `history` returns the window oldest first, never starting with an assistant
      message (a reply without its question confuses the model; windows written
      before cuts in blocks may hold one), and counts as activity for the idle
      timeout and the least-recently-used order.
    - `conversation` returns the same window with its times, or None when the
      conversation is unknown or expired; it is an inspection, not activity.
    - `forget` removes a conversation; forgetting an unknown one is no error.
    - Idle conversations expire `ttl` seconds after their last activity; beyond
      the cap the least recently used conversation is forgotten (ties in the
      time of last use are broken arbitrarily).
    - A store that cannot be reached raises `MemoryUnavailable` (a 503), never
      hangs: every backend bounds its waits.
    - `max_turns` 0 stores nothing.
    """

    def describe(self) -> str:
        """Which store this is and where, for the start-up log."""
        ...

    def history(self, conversation_id: str) -> list[Message]: ...

    def conversation(self, conversation_id: str) -> Conversation | None: ...

    def append_exchange(
        self, conversation_id: str, user: str, assistant: str | Sequence[Message]
    ) -> None: ...

    def cut(self, conversation_id: str, keep: int) -> None: ...

    def forget(self, conversation_id: str) -> None: ...

    def __len__(self) -> int: ...


def drop_leading_reply(messages: Sequence[Message]) -> list[Message]:
    """The window without opening messages whose question was dropped (a reply,
    tool calls or results before the first user message).

    The one place of this rule: the stores apply it to their window, and the
    chat service again after trimming history to the token budget.
    """
    start = 0
    while start < len(messages) and messages[start].role != "user":
        start += 1
    return list(messages[start:])
