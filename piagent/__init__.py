"""piagent: a small HTTP agent server in front of a local Ollama."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from flask import Flask

from piagent.agents import Agent, load_agents
from piagent.auth import install_auth, load_api_keys
from piagent.blueprints.agents import bp as agents_bp
from piagent.blueprints.chat import bp as chat_bp
from piagent.blueprints.conversations import bp as conversations_bp
from piagent.blueprints.health import bp as health_bp
from piagent.blueprints.openai_chat import bp as openai_chat_bp
from piagent.blueprints.openai_models import bp as openai_models_bp
from piagent.blueprints.ready import bp as ready_bp
from piagent.chat import ChatService
from piagent.cors import install_cors
from piagent.errors import register_error_handlers
from piagent.memory import MemoryStore, build_memory
from piagent.providers import OllamaProvider, OpenAIProvider, Provider
from piagent.proxy import TrustedProxies
from piagent.rate_limits import install_rate_limits
from piagent.requestlog import init_request_log
from piagent.schemas import ChatCompletionSchema, ChatRequestSchema
from piagent.settings import Settings, is_loopback_bind
from piagent.warmup import start_warm_up

__version__ = "0.4.0"

log = logging.getLogger("piagent")


@dataclass(frozen=True)
class Services:
    """What views reach via app.extensions["piagent"]; lives as long as the worker."""

    settings: Settings
    chat: ChatService
    chat_schema: ChatRequestSchema
    completion_schema: ChatCompletionSchema
    provider: Provider
    memory: MemoryStore | None


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app from settings (read from the environment when not given)."""
    settings = settings or Settings.from_env()
    _configure_logging(settings)
    agent_table = load_agents(settings)
    api_keys = load_api_keys(settings)
    provider = build_provider(settings)
    memory = build_memory(settings)
    log.info(
        "conversation memory: %s", memory.describe() if memory is not None else "off"
    )
    app = Flask(__name__)
    # One byte over the limit, so read_json_object can see a chunked body is too
    # large; at the limit exactly, werkzeug would silently truncate it.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["piagent"] = Services(
        settings=settings,
        chat=ChatService(settings, agent_table, provider, memory),
        chat_schema=ChatRequestSchema(max_message_chars=settings.max_message_chars),
        completion_schema=ChatCompletionSchema(
            max_message_chars=settings.max_message_chars
        ),
        provider=provider,
        memory=memory,
    )
    for blueprint in (
        health_bp,
        ready_bp,
        agents_bp,
        chat_bp,
        conversations_bp,
        openai_chat_bp,
        openai_models_bp,
    ):
        app.register_blueprint(blueprint)
    register_error_handlers(app)
    init_request_log(app, settings)
    # Order matters: limits first, so wrong keys are counted too; CORS headers
    # go on every answer, errors included, so browser code can read them.
    install_rate_limits(
        app, settings, api_keys, [chat_bp, openai_chat_bp], unlimited=[health_bp]
    )
    install_auth(app, api_keys)
    install_cors(app, settings)
    _log_guards(settings, len(api_keys))
    app.wsgi_app = TrustedProxies(app.wsgi_app, settings.trusted_proxies)  # type: ignore[method-assign]
    _probe_in_background(provider, agent_table)
    if settings.warmup:
        default = agent_table.get("general")
        start_warm_up(provider, default.model if default else settings.general_model)
    return app


def build_provider(settings: Settings) -> Provider:
    if settings.provider == "openai":
        return OpenAIProvider(
            settings.openai_base_url,
            api_key=settings.openai_api_key,
            timeout=settings.ollama_timeout,
            connect_timeout=settings.ollama_connect_timeout,
            temperature=settings.temperature,
            max_tokens=settings.max_tokens,
        )
    return OllamaProvider(
        settings.ollama_host,
        timeout=settings.ollama_timeout,
        connect_timeout=settings.ollama_connect_timeout,
        keep_alive=settings.ollama_keep_alive,
        options={
            "temperature": settings.temperature,
            "num_ctx": settings.ctx_tokens,
            "num_predict": settings.max_tokens,
        },
    )


def _configure_logging(settings: Settings) -> None:
    """Log through gunicorn's handlers when under gunicorn, else to stderr."""
    gunicorn_log = logging.getLogger("gunicorn.error")
    if gunicorn_log.handlers:
        log.handlers = list(gunicorn_log.handlers)
        log.propagate = False
    elif not log.handlers and not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(settings.log_level.upper())


def _log_guards(settings: Settings, key_count: int) -> None:
    """One line on how piagent is guarded, and a warning when it is not."""
    if not key_count and not is_loopback_bind(settings.bind):
        log.warning(
            "serving %s without API keys (ALLOW_UNAUTHENTICATED=true): anyone who "
            "can reach it may use the model",
            settings.bind,
        )
    log.info(
        "guards: %s; rate limits /chat %s, others %s; CORS %s; %d generation(s) "
        "at once, %d waiting up to %g s, %g s each at most",
        f"{key_count} API key(s)" if key_count else "no API keys",
        settings.rate_limit_chat or "none",
        settings.rate_limit_default or "none",
        settings.cors_origins or "off",
        settings.max_concurrent_generations,
        settings.max_queued_generations,
        settings.max_queue_wait_seconds,
        settings.max_generation_seconds,
    )


def _probe_in_background(provider: Provider, agent_table: dict[str, Agent]) -> None:
    """Warn once at start-up when Ollama is down or a model is missing.

    In a thread (a greenlet under gevent) so a slow host never delays start-up;
    piagent still starts, and /chat answers 502 with the same guidance.
    """
    models = sorted({agent.model for agent in agent_table.values()})

    def probe() -> None:
        for problem in provider.probe(models):
            log.warning(problem)

    threading.Thread(target=probe, name="ollama-probe", daemon=True).start()
