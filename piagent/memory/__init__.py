"""Conversation memory: recent messages per conversation id, and nothing else."""

from piagent.memory.base import (
    Conversation,
    MemoryStore,
    Message,
    StoredCall,
    exchange_messages,
)
from piagent.memory.factory import build_memory
from piagent.memory.local import LocalMemoryStore

__all__ = [
    "Conversation",
    "LocalMemoryStore",
    "MemoryStore",
    "Message",
    "StoredCall",
    "build_memory",
    "exchange_messages",
]
