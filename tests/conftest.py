"""Fixtures: a fake Ollama in this process; the app in-process on Flask's test
client for answers that do not need gevent (4xx shapes, error bodies, 404/405,
settings-driven answers); real gunicorn servers in front of the fake for
everything else (streams, pings, timers, disconnects, the queue, nginx)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from piagent import create_app
from piagent.settings import Settings
from tests.support.browser import Browser, browser_available
from tests.support.fake_ollama import FakeOllama
from tests.support.fake_openai import FakeOpenAI
from tests.support.http_target import HttpTarget
from tests.support.redis_server import RedisServer, redis_available
from tests.support.server import Server, stop_all

# Short so the timeout tests are quick; the default is sized for a cold Pi.
TEST_TIMEOUT = "1.5"
# The http tool's token in the servers of tool_env (a test secret).
TOOL_TOKEN = "ha-long-lived-token"


@pytest.fixture(scope="session")
def fake_ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


@pytest.fixture
def ollama(fake_ollama: FakeOllama) -> Iterator[FakeOllama]:
    """The shared fake, reset before and after each test that changes it."""
    fake_ollama.reset()
    yield fake_ollama
    fake_ollama.reset()


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake_openai(fake_openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The shared fake OpenAI-compatible server, reset around each test."""
    fake_openai_server.reset()
    yield fake_openai_server
    fake_openai_server.reset()


@pytest.fixture(scope="session")
def start_server(
    fake_ollama: FakeOllama, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Server]]:
    """Ready servers by configuration, started once per session and shared."""
    servers: dict[tuple, Server] = {}

    def start(**env: str) -> Server:
        settings = {"OLLAMA_HOST": fake_ollama.url, "OLLAMA_TIMEOUT": TEST_TIMEOUT}
        # The suite sends far more than a person would; limits are tested apart.
        settings.update(RATE_LIMIT_CHAT="", RATE_LIMIT_DEFAULT="")
        settings.update(env)
        key = tuple(sorted(settings.items()))
        if key not in servers:
            server = Server(tmp_path_factory.mktemp("server"), settings)
            try:
                servers[key] = server.wait_ready()
            except BaseException:
                server.stop()  # a server that never got ready must not outlive us
                raise
        return servers[key]

    yield start
    stop_all(servers.values())


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """A server of this test's own, with exactly the environment given."""
    launched: list[Server] = []

    def launch_one(
        env: dict[str, str], workdir: Path | None = None, bind: bool = True
    ) -> Server:
        server = Server(workdir or tmp_path, env, bind=bind)
        launched.append(server)
        return server

    yield launch_one
    stop_all(launched)


@pytest.fixture
def server(start_server: Callable[..., Server], ollama: FakeOllama) -> Server:
    return start_server()


@pytest.fixture(scope="session")
def make_app(fake_ollama: FakeOllama) -> Callable[..., Flask]:
    """In-process apps by settings, built once per session and shared, with
    the same test defaults as start_server (the fake Ollama, a short
    MODEL_TIMEOUT, no rate limits); keyword arguments are Settings fields.
    `fresh=True` builds one for the caller alone (to add routes to, say)."""
    apps: dict[tuple[tuple[str, Any], ...], Flask] = {}

    def make(fresh: bool = False, **overrides: Any) -> Flask:
        fields = {
            "ollama_host": fake_ollama.url,
            "model_timeout": float(TEST_TIMEOUT),
            "rate_limit_chat": "",
            "rate_limit_default": "",
            **overrides,
        }
        key = tuple(sorted(fields.items()))
        if fresh:
            return create_app(Settings(**fields))
        if key not in apps:
            apps[key] = create_app(Settings(**fields))
        return apps[key]

    return make


@pytest.fixture
def app(make_app: Callable[..., Flask], ollama: FakeOllama) -> Flask:
    """The app with the test defaults, in this process (no gunicorn, no gevent)."""
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session; CI installs it, so CI never skips."""
    if not redis_available():
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing; .ci/run should have installed it")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sqlite_memory_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("sqlite") / "memory.sqlite3")


@pytest.fixture(params=["memory", "sqlite", "redis"])
def memory_env(
    request: pytest.FixtureRequest, sqlite_memory_path: str
) -> dict[str, str]:
    """Server settings for each memory backend, for tests run against all three."""
    if request.param == "sqlite":
        return {"MEMORY_BACKEND": "sqlite", "MEMORY_SQLITE_PATH": sqlite_memory_path}
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_server").url
        return {"MEMORY_BACKEND": "redis", "REDIS_URL": redis_url}
    return {}


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless chromium for the session; CI installs it, so CI never skips."""
    if not browser_available():
        if os.environ.get("CI"):
            pytest.fail("chromium or chromedriver is missing; .ci/run installs them")
        pytest.skip(
            "chromium is not installed (apt-get install chromium chromium-driver)"
        )
    found = Browser()
    yield found
    found.quit()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where browser tests save screenshots: PIAGENT_SCREENSHOTS (e.g.
    docs/screenshots, to update the README's), else a temporary directory."""
    chosen = os.environ.get("PIAGENT_SCREENSHOTS")
    return Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="session")
def tool_target() -> Iterator[HttpTarget]:
    """A loopback service for the http tool: a stand-in for Home Assistant."""
    with HttpTarget() as service:
        yield service


@pytest.fixture(scope="session")
def tool_env(
    tmp_path_factory: pytest.TempPathFactory, tool_target: HttpTarget
) -> dict[str, str]:
    """Settings of a server whose agents have tools: `helper` (clock,
    calculator) and `house` (http, allowed under tool_target's /api/)."""
    directory = tmp_path_factory.mktemp("agents")
    (directory / "helper.md").write_text(
        "---\ntools: clock, calculator\nclock.timezone: UTC\n---\nYou help.\n"
    )
    (directory / "house.md").write_text(
        "---\n"
        "tools: http\n"
        f"http.allow: {tool_target.url}/api/\n"
        "http.token_env: HA_TOKEN\n"
        "http.methods: GET, POST\n"
        "http.timeout: 1\n"
        "---\nYou run the house.\n"
    )
    return {
        "AGENTS_DIR": str(directory),
        "HA_TOKEN": TOOL_TOKEN,
        "LOG_FORMAT": "json",
    }
