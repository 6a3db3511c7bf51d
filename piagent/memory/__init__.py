"""Conversation memory: recent messages per conversation id, and nothing else."""

from piagent.memory.base import Conversation, MemoryStore, Message
from piagent.memory.factory import build_memory
from piagent.memory.local import LocalMemoryStore

__all__ = ["Conversation", "LocalMemoryStore", "MemoryStore", "Message", "build_memory"]
