"""Model servers piagent can talk to, behind one small protocol."""

from piagent.providers.base import Provider, Reply, TokenStream, Usage
from piagent.providers.ollama import OllamaProvider

__all__ = ["OllamaProvider", "Provider", "Reply", "TokenStream", "Usage"]
