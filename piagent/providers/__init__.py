"""Model servers piagent can talk to, behind one small protocol."""

from piagent.providers.base import (
    ChatMessage,
    ModelState,
    Options,
    Provider,
    Readiness,
    Reply,
    Thought,
    TokenStream,
    ToolCall,
    ToolOffer,
    Usage,
    arguments_text,
    new_call_id,
)
from piagent.providers.ollama import OllamaProvider
from piagent.providers.openai import OpenAIProvider

__all__ = [
    "ChatMessage",
    "ModelState",
    "OllamaProvider",
    "OpenAIProvider",
    "Options",
    "Provider",
    "Readiness",
    "Reply",
    "Thought",
    "TokenStream",
    "ToolCall",
    "ToolOffer",
    "Usage",
    "arguments_text",
    "new_call_id",
]
