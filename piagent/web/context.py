"""What the views reach through the app: the services built at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from flask import current_app

from piagent.catalog import ModelCatalog
from piagent.chat import ChatService
from piagent.generation_queue import GenerationQueue
from piagent.keys import Keyring
from piagent.memory import MemoryStore
from piagent.providers import Provider
from piagent.settings import Settings
from piagent.web.ollama_schemas import OllamaChatSchema
from piagent.web.schemas import ChatCompletionSchema, ChatRequestSchema

EXTENSION = "piagent"
# app.extensions[RELOAD]: a callable that re-reads what can change while
# running (the keys file); gunicorn.conf.py calls it on SIGHUP.
RELOAD = "piagent.reload"


@dataclass(frozen=True)
class Services:
    """Kept in app.extensions["piagent"]; lives as long as the worker."""

    settings: Settings
    chat: ChatService
    chat_schema: ChatRequestSchema
    completion_schema: ChatCompletionSchema
    provider: Provider
    memory: MemoryStore | None
    keys: Keyring
    # /ollama: its chat body's schema, and the model server's model catalog.
    ollama_chat_schema: OllamaChatSchema
    catalog: ModelCatalog
    # The generation slots; /ready asks a shared one whether Redis answers.
    slots: GenerationQueue | None = None


def services() -> Services:
    """The current app's services (inside a request or an app context)."""
    return cast(Services, current_app.extensions[EXTENSION])
