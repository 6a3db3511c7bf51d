"""The contract every memory store keeps: in-process, SQLite and Redis alike."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol


class Message(NamedTuple):
    """One stored message: `user` or `assistant`, and its text."""

    role: str
    content: str


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
    - `append_exchange` stores a user message and the assistant's reply together,
      so concurrent requests on one conversation (from any thread, greenlet or
      process sharing the store) never lose or interleave halves. If the window
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
        self, conversation_id: str, user: str, assistant: str
    ) -> None: ...

    def cut(self, conversation_id: str, keep: int) -> None: ...

    def forget(self, conversation_id: str) -> None: ...

    def __len__(self) -> int: ...


def drop_leading_reply(messages: Sequence[Message]) -> list[Message]:
    """The window without an opening assistant message whose question was dropped.

    The one place of this rule: the stores apply it to their window, and the
    chat service again after trimming history to the token budget.
    """
    start = 1 if messages and messages[0].role == "assistant" else 0
    return list(messages[start:])
