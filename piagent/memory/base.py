"""The contract every memory store keeps (the in-process one now, shared ones later)."""

from __future__ import annotations

from typing import NamedTuple, Protocol


class Message(NamedTuple):
    role: str
    content: str


class MemoryStore(Protocol):
    """Per-conversation window of the last `max_turns` messages.

    - `history` returns the window oldest first, never starting with an assistant
      message (a reply without its question confuses the model), and counts as
      activity for the idle timeout and the least-recently-used order.
    - `append_exchange` stores a user message and the assistant's reply together,
      so concurrent requests on one conversation never interleave halves.
    - Idle conversations expire after the TTL; beyond the cap the least recently
      used conversation is forgotten.
    """

    def history(self, conversation_id: str) -> list[Message]: ...

    def append_exchange(
        self, conversation_id: str, user: str, assistant: str
    ) -> None: ...

    def __len__(self) -> int: ...
