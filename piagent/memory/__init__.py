"""Conversation memory: recent messages per conversation id, and nothing else."""

from piagent.memory.base import MemoryStore, Message
from piagent.memory.local import LocalMemoryStore

__all__ = ["LocalMemoryStore", "MemoryStore", "Message"]
