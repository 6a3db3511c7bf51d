"""create_app: settings in, the services built and wired, a WSGI app out.

The composition root: the only module that knows both the domain (agents,
provider, memory, chat service) and the web layer it hands them to.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from flask import Flask
from gevent import monkey

from piagent.agents import Agent, load_agents
from piagent.catalog import ModelCatalog
from piagent.chat import ChatService
from piagent.generation_queue import GenerationQueue
from piagent.host_queue import HostQueue
from piagent.hosts import AllowedHosts, allowed_hosts
from piagent.keys import (
    ApiKeys,
    Keyring,
    is_loopback_bind,
    load_api_keys,
    refuse_an_open_network_bind,
)
from piagent.memory import build_memory
from piagent.providers import OllamaProvider, OpenAIProvider, Provider
from piagent.providers.hosts import HostRouter
from piagent.settings import Settings
from piagent.warmup import start_warm_up
from piagent.web.app import build_app
from piagent.web.context import Services
from piagent.web.ollama_schemas import OllamaChatSchema
from piagent.web.schemas import ChatCompletionSchema, ChatRequestSchema

log = logging.getLogger("piagent")


def create_app(
    settings: Settings | None = None,
    *,
    environ: Callable[[str], str | None] | None = None,
) -> Flask:
    """Build the app from settings (read from the environment when not given).

    `environ` looks up the variables agent files name (an http tool's token);
    by default the environment, then `.env`, as the settings are read.
    """
    settings = settings or Settings.from_env()
    refuse_an_open_network_bind(settings)
    _configure_logging(settings)
    agent_table = (
        load_agents(settings) if environ is None else load_agents(settings, environ)
    )
    for agent in agent_table.values():
        if agent.tools is not None:
            log.info("agent %s: tools %s", agent.name, ", ".join(agent.tools.names))
    api_keys = load_api_keys(settings)
    provider = build_provider(settings)
    memory = build_memory(settings)
    log.info(
        "conversation memory: %s", memory.describe() if memory is not None else "off"
    )
    queue = build_queue(settings)
    services = Services(
        settings=settings,
        chat=ChatService(settings, agent_table, provider, memory, queue),
        slots=queue,
        chat_schema=ChatRequestSchema(max_message_chars=settings.max_message_chars),
        completion_schema=ChatCompletionSchema(
            max_message_chars=settings.max_message_chars
        ),
        provider=provider,
        memory=memory,
        keys=Keyring(settings, api_keys),
        ollama_chat_schema=OllamaChatSchema(
            max_message_chars=settings.max_message_chars
        ),
        catalog=ModelCatalog(provider),
    )
    hosts = allowed_hosts(settings)
    app = build_app(services, hosts)
    _log_guards(settings, api_keys, hosts)
    _probe_in_background(provider, agent_table, settings)
    if settings.warmup:
        default = agent_table.get("general")
        start_warm_up(provider, default.model if default else settings.general_model)
    return app


def build_provider(settings: Settings) -> Provider:
    """The model server's provider; with several hosts, a HostRouter over one
    provider per host."""
    hosts = settings.model_hosts
    if len(hosts) == 1:
        return build_host_provider(settings, hosts[0])
    log.info(
        "%d model hosts: %s; MAX_CONCURRENT_GENERATIONS=%d on each",
        len(hosts),
        ", ".join(hosts),
        settings.max_concurrent_generations,
    )
    return HostRouter(
        [build_host_provider(settings, host) for host in hosts],
        hosts,
        cooldown=settings.host_cooldown_seconds,
        cooldown_max=settings.host_cooldown_max_seconds,
    )


def build_queue(settings: Settings) -> GenerationQueue:
    """The generation slots: per host, with one line across them; in this
    process, or with STATE_BACKEND=redis shared by every process."""
    hosts = settings.model_hosts
    concurrent = settings.max_concurrent_generations
    queued = settings.max_queued_generations
    seconds = settings.max_generation_seconds
    horizon = settings.model_timeout + 1
    wait = settings.max_queue_wait_seconds
    if settings.state_backend == "redis":
        # Imported only then: idle RSS of master + worker 72.8 -> 77.0 MB
        # with it (redis-py; bench lifecycle, median of 3, 2026-12-02).
        from piagent.shared_slots import SharedQueue

        shared = SharedQueue(
            settings.redis_url,
            hosts,
            concurrent,
            queued,
            seconds,
            lease_seconds=settings.slot_lease_seconds,
            timeout=settings.redis_timeout,
            read_horizon=horizon,
            max_wait=wait,
        )
        log.info(
            "generation slots and rate limits shared through %s (leases of %g s)",
            shared.describe(),
            settings.slot_lease_seconds,
        )
        return shared
    if len(hosts) == 1:
        return GenerationQueue(
            concurrent,
            queued,
            seconds,
            read_horizon=horizon,
            max_wait=wait,
            host=hosts[0],
        )
    return HostQueue(
        hosts, concurrent, queued, seconds, read_horizon=horizon, max_wait=wait
    )


def build_host_provider(settings: Settings, host: str) -> Provider:
    if settings.provider == "openai":
        return OpenAIProvider(
            host,
            api_key=settings.openai_api_key,
            timeout=settings.model_timeout,
            connect_timeout=settings.model_connect_timeout,
            temperature=settings.temperature,
            max_tokens=settings.max_tokens,
        )
    return OllamaProvider(
        host,
        timeout=settings.model_timeout,
        connect_timeout=settings.model_connect_timeout,
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


def _log_guards(settings: Settings, keys: ApiKeys, hosts: AllowedHosts) -> None:
    """One line on how piagent is guarded, and a warning when it is not."""
    if not keys and not is_loopback_bind(settings.bind):
        log.warning(
            "serving %s without API keys (ALLOW_UNAUTHENTICATED=true): anyone who "
            "can reach it may use the model",
            settings.bind,
        )
    if hosts.anything:
        log.warning(
            "ALLOWED_HOSTS=*: piagent answers to any host name, so a web page that "
            "points a name of its own at this machine (DNS rebinding) can use the "
            "model and read conversations; list the names instead"
        )
    log.info("allowed hosts: %s", hosts.describe())
    log.info(
        "guards: %s; rate limits /chat %s, others %s; CORS %s; %d generation(s) "
        "at once, %d waiting up to %g s, %g s each at most",
        keys.describe() if keys else "no API keys",
        settings.rate_limit_chat or "none",
        settings.rate_limit_default or "none",
        settings.cors_origins or "off",
        settings.max_concurrent_generations,
        settings.max_queued_generations,
        settings.max_queue_wait_seconds,
        settings.max_generation_seconds,
    )


def _probe_in_background(
    provider: Provider, agent_table: dict[str, Agent], settings: Settings
) -> None:
    """Warn once at start-up when Ollama is down or a model is missing.

    In a thread (a greenlet under gevent) so a slow host never delays start-up;
    piagent still starts, and /chat answers 502 with the same guidance. With
    several hosts, each worker then checks them every HOST_PROBE_SECONDS
    (under gunicorn's gevent worker only: in-process apps of the tests call
    `refresh` themselves).
    """
    models = sorted({agent.model for agent in agent_table.values()})

    def probe() -> None:
        for problem in provider.probe(models):
            log.warning(problem)
        if isinstance(provider, HostRouter):
            provider.refresh(models)

    threading.Thread(target=probe, name="ollama-probe", daemon=True).start()
    if isinstance(provider, HostRouter) and monkey.is_module_patched("socket"):
        provider.start_probing(models, settings.host_probe_seconds)
