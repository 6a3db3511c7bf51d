"""Model servers piagent can talk to, behind one small protocol."""

from piagent.providers.base import (
    ModelState,
    Options,
    Provider,
    Readiness,
    Reply,
    TokenStream,
    Usage,
)
from piagent.providers.ollama import OllamaProvider
from piagent.providers.openai import OpenAIProvider

__all__ = [
    "ModelState",
    "OllamaProvider",
    "OpenAIProvider",
    "Options",
    "Provider",
    "Readiness",
    "Reply",
    "TokenStream",
    "Usage",
]
