"""Model servers piagent can talk to, behind one small protocol."""

from piagent.providers.base import (
    ModelState,
    Provider,
    Readiness,
    Reply,
    TokenStream,
    Usage,
)
from piagent.providers.ollama import OllamaProvider

__all__ = [
    "ModelState",
    "OllamaProvider",
    "Provider",
    "Readiness",
    "Reply",
    "TokenStream",
    "Usage",
]
