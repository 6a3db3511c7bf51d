"""The one typed, immutable settings object, read once from the environment and .env."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from ipaddress import IPv4Network, IPv6Network, ip_network
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from decouple import Config, RepositoryEmpty, RepositoryEnv

PROVIDERS = ("ollama", "openai")
LOG_FORMATS = ("json", "text")
MEMORY_BACKENDS = ("memory", "sqlite", "redis")
KEEP_ALIVE_PATTERN = re.compile(r"-?\d+|-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+")
CORS_ORIGIN_PATTERN = re.compile(
    r"https?://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?"
)


class SettingsError(ValueError):
    """A setting has a value piagent cannot run with; the message is one line."""


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class Settings:
    """Everything piagent can be configured with; each field is one variable."""

    provider: str = _help(
        "Model server kind: `ollama`, or `openai` for any OpenAI-compatible server.",
        "ollama",
    )
    ollama_host: str = _help("Base URL of Ollama.", "http://127.0.0.1:11434")
    ollama_model_general: str = _help(
        "Model for agents that name none and have no OLLAMA_MODEL_<AGENT>.",
        "qwen2.5:3b-instruct",
    )
    ollama_timeout: float = _help(
        "Seconds to wait for the model server's first byte and between bytes (also "
        "with PROVIDER=openai); a cold Pi must "
        "load the model first, and giving up aborts the load.",
        300.0,
    )
    ollama_connect_timeout: float = _help(
        "Seconds to wait for a TCP connection to the model server (also with "
        "PROVIDER=openai); keeps 'it is down' fast.",
        3.0,
    )
    ollama_keep_alive: str = _help(
        "How long Ollama keeps the model loaded after a request (`5m`, `1h`, `-1`).",
        "5m",
    )
    ctx_tokens: int = _help("Context window asked of the model (num_ctx).", 2048)
    max_tokens: int = _help("Most tokens in one reply (num_predict).", 200)
    temperature: float = _help("Sampling temperature, 0 to 2.", 0.7)
    enable_memory: bool = _help("Keep recent turns per conversation id.", True)
    memory_max_turns: int = _help(
        "Stored messages (user or assistant) per conversation.", 8
    )
    memory_trim_to: int = _help(
        "Messages kept when a conversation outgrows MEMORY_MAX_TURNS or the "
        "token budget: the oldest whole exchanges go in one cut down to this "
        "many, so the model's prompt cache stays warm between cuts.",
        0,
    )
    memory_ttl_min: float = _help("Minutes after which an idle conversation ends.", 60)
    memory_max_conversations: int = _help(
        "Conversations kept; the least recently used goes first.", 500
    )
    agents_dir: str = _help(
        "Directory of extra agents (`<name>.md`), adding to or overriding built-ins.",
        "",
    )
    agent_models: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}),
        metadata={
            "help": "Per-agent models from OLLAMA_MODEL_<AGENT> (or OPENAI_MODEL_"
            "<AGENT> with PROVIDER=openai), read by from_env."
        },
    )
    max_body_bytes: int = _help("Largest accepted request body in bytes.", 65536)
    max_message_chars: int = _help("Longest accepted message in characters.", 4000)
    log_level: str = _help("Log level of piagent's own logger.", "info")
    # --- OpenAI-compatible model server (PROVIDER=openai) ---
    openai_base_url: str = _help(
        "Base URL of an OpenAI-compatible server, up to and including /v1.",
        "http://127.0.0.1:8080/v1",
    )
    openai_api_key: str = field(
        default="",
        repr=False,
        metadata={"help": "Bearer key for that server; empty sends none."},
    )
    openai_model_general: str = _help(
        "Model for agents that name none and have no OPENAI_MODEL_<AGENT>.",
        "qwen2.5-3b-instruct",
    )
    # --- Streams: SSE and NDJSON ---
    stream_prime_seconds: float = _help(
        "Seconds an SSE or NDJSON stream waits for the first token before it "
        "answers 200 and sends pings; failures within it get their real status.",
        5.0,
    )
    stream_ping_seconds: float = _help(
        "Seconds between pings of an SSE or NDJSON stream while the model is silent.",
        10.0,
    )
    # --- Deployment: proxies, request logs, warm-up ---
    trusted_proxies: str = _help(
        "Comma-separated addresses or networks of reverse proxies whose "
        "X-Forwarded-For / X-Real-IP name the client; empty trusts none.",
        "127.0.0.1,::1",
    )
    log_format: str = _help(
        "Request log lines on stdout: `json` (one object per line) or `text`.", "text"
    )
    log_content: bool = _help(
        "Also log message and reply text in request log lines (private data).", False
    )
    warmup: bool = _help(
        "Load the general agent's model into Ollama when a worker starts.", False
    )
    # --- Memory backends: durable and shared conversation memory ---
    memory_backend: str = _help(
        "Where conversations live: `memory` (in-process), `sqlite` or `redis`.",
        "memory",
    )
    memory_sqlite_path: str = _help(
        "SQLite file of MEMORY_BACKEND=sqlite (relative to the working directory).",
        "piagent-memory.sqlite3",
    )
    redis_url: str = _help(
        "Redis of MEMORY_BACKEND=redis: redis://[:password@]host:port/db, "
        "rediss:// or unix:///path.sock.",
        "redis://127.0.0.1:6379/0",
    )
    redis_timeout: float = _help(
        "Seconds to connect to Redis or wait for its answer before a 503.", 1.0
    )
    # --- LAN security: API keys, rate limits, CORS, the generation queue ---
    bind: str = _help(
        "Where gunicorn listens; gunicorn.conf.py hands piagent gunicorn's real "
        "bind, so a non-loopback one without API keys can be refused.",
        "127.0.0.1:8000",
    )
    api_keys: str = field(
        default="",
        repr=False,
        metadata={"help": "Comma-separated API keys; empty: none from here."},
    )
    api_keys_file: str = _help(
        "File of API keys, one a line, `#` comments allowed.", ""
    )
    allow_unauthenticated: bool = _help(
        "Serve a non-loopback address without API keys (anyone there may use it).",
        False,
    )
    rate_limit_chat: str = _help(
        "Limits on POST /chat per key (or client address), e.g. 30/minute;500/day; "
        "empty: none.",
        "30/minute",
    )
    rate_limit_default: str = _help(
        "Limits on the other endpoints except /health, per key or address; "
        "empty: none.",
        "120/minute",
    )
    cors_origins: str = _help(
        "Comma-separated browser origins allowed to call piagent; empty: no CORS.",
        "",
    )
    max_concurrent_generations: int = _help(
        "Generations talking to the model at once (like OLLAMA_NUM_PARALLEL).", 1
    )
    max_queued_generations: int = _help(
        "Requests that may wait for a generation slot; more get a 503.", 4
    )
    max_queue_wait_seconds: float = _help(
        "Longest a request waits in line for a generation slot before a 503.", 300.0
    )
    max_generation_seconds: float = _help(
        "Deadline of one whole generation, first byte to last, in seconds.", 600.0
    )

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "agent_models", MappingProxyType(dict(self.agent_models))
        )
        for check in _CHECKS:
            check(self)

    @property
    def general_model(self) -> str:
        """The model of agents that name none, from the provider's own variable."""
        if self.provider == "openai":
            return self.openai_model_general
        return self.ollama_model_general

    @property
    def memory_ttl_seconds(self) -> float:
        return self.memory_ttl_min * 60

    @classmethod
    def from_env(
        cls, config: Config | None = None, agent_names: Iterable[str] | None = None
    ) -> Settings:
        """Read every variable once; `.env` in the working directory fills gaps.

        Per-agent model variables are looked up for the agents that exist, so a
        misspelt OLLAMA_MODEL_<AGENT> cannot silently apply to nothing else.
        """
        if config is None:
            repo = (
                RepositoryEnv(".env") if os.path.isfile(".env") else RepositoryEmpty()
            )
            config = Config(repo)
        values: dict[str, Any] = {}
        for spec in fields(cls):
            if spec.name == "agent_models":
                continue
            raw = config(spec.name.upper(), default=None)
            if raw is not None:
                values[spec.name] = _parse(spec.name.upper(), raw, spec.type)
        if agent_names is None:
            from piagent.agents import discover_agent_names

            agent_names = discover_agent_names(values.get("agents_dir", ""))
        models = {}
        provider = values.get("provider", "ollama")
        for name in agent_names:
            variable = agent_model_variable(name, provider)
            model = config(variable, default="").strip()
            if model:
                models[name] = model
        values["agent_models"] = models
        return cls(**values)


def agent_model_variable(agent: str, provider: str = "ollama") -> str:
    """OLLAMA_MODEL_<AGENT> (OPENAI_MODEL_<AGENT> with PROVIDER=openai): upper
    case, with `-` as `_` so shells accept it."""
    prefix = "OPENAI_MODEL_" if provider == "openai" else "OLLAMA_MODEL_"
    return prefix + agent.upper().replace("-", "_")


def _parse(variable: str, raw: str, kind: str) -> Any:
    raw = raw.strip()
    if kind == "bool":
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{variable}={raw!r}: expected true or false")
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{variable}={raw!r}: expected an integer") from None
    if kind == "float":
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{variable}={raw!r}: expected a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise SettingsError(f"{variable}={raw!r}: expected a finite number")
        return value
    return raw


def _require(condition: bool, variable: str, value: Any, expected: str) -> None:
    if not condition:
        raise SettingsError(f"{variable}={value!r}: expected {expected}")


def _check_numbers(s: Settings) -> None:
    _require(0 <= s.temperature <= 2, "TEMPERATURE", s.temperature, "0 to 2")
    _require(s.ctx_tokens >= 256, "CTX_TOKENS", s.ctx_tokens, "an integer >= 256")
    _require(
        1 <= s.max_tokens < s.ctx_tokens,
        "MAX_TOKENS",
        s.max_tokens,
        f"an integer from 1 to CTX_TOKENS-1 ({s.ctx_tokens - 1})",
    )
    _require(s.ollama_timeout > 0, "OLLAMA_TIMEOUT", s.ollama_timeout, "seconds > 0")
    _require(
        s.ollama_connect_timeout > 0,
        "OLLAMA_CONNECT_TIMEOUT",
        s.ollama_connect_timeout,
        "seconds > 0",
    )
    _require(
        s.memory_max_turns >= 0,
        "MEMORY_MAX_TURNS",
        s.memory_max_turns,
        "an integer >= 0",
    )
    # MEMORY_MAX_TURNS=0 keeps no history at all: there is nothing to cut.
    _require(
        s.memory_trim_to >= 0
        and (s.memory_max_turns == 0 or s.memory_trim_to < s.memory_max_turns),
        "MEMORY_TRIM_TO",
        s.memory_trim_to,
        f"an integer from 0 to MEMORY_MAX_TURNS-1 ({s.memory_max_turns - 1})"
        if s.memory_max_turns > 0
        else "an integer >= 0",
    )
    _require(s.memory_ttl_min > 0, "MEMORY_TTL_MIN", s.memory_ttl_min, "minutes > 0")
    _require(
        s.memory_max_conversations >= 1,
        "MEMORY_MAX_CONVERSATIONS",
        s.memory_max_conversations,
        "an integer >= 1",
    )
    _require(
        s.max_body_bytes >= 1024, "MAX_BODY_BYTES", s.max_body_bytes, "bytes >= 1024"
    )
    _require(
        s.max_message_chars >= 1,
        "MAX_MESSAGE_CHARS",
        s.max_message_chars,
        "an integer >= 1",
    )


def _check_http_url(variable: str, value: str, example: str) -> None:
    parts = urlsplit(value)
    _require(
        parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in value,
        variable,
        value,
        f"an http(s) URL such as {example}",
    )
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        _require(False, variable, value, "a URL with a valid port")


def _check_text(s: Settings) -> None:
    _require(s.provider in PROVIDERS, "PROVIDER", s.provider, f"one of {PROVIDERS}")
    _check_http_url("OLLAMA_HOST", s.ollama_host, "http://127.0.0.1:11434")
    _require(
        bool(s.ollama_model_general.strip()),
        "OLLAMA_MODEL_GENERAL",
        s.ollama_model_general,
        "a model name such as qwen2.5:3b-instruct",
    )
    _check_http_url("OPENAI_BASE_URL", s.openai_base_url, "http://127.0.0.1:8080/v1")
    _require(
        bool(s.openai_model_general.strip()),
        "OPENAI_MODEL_GENERAL",
        s.openai_model_general,
        "a model name as the server's GET /v1/models lists it",
    )
    _require(
        KEEP_ALIVE_PATTERN.fullmatch(s.ollama_keep_alive) is not None,
        "OLLAMA_KEEP_ALIVE",
        s.ollama_keep_alive,
        "seconds or a duration such as 5m, 1h or -1 (forever)",
    )
    _require(
        s.log_level.lower() in ("debug", "info", "warning", "error"),
        "LOG_LEVEL",
        s.log_level,
        "debug, info, warning or error",
    )


def _check_streams(s: Settings) -> None:
    _require(
        s.stream_prime_seconds >= 0,
        "STREAM_PRIME_SECONDS",
        s.stream_prime_seconds,
        "seconds >= 0",
    )
    _require(
        s.stream_ping_seconds > 0,
        "STREAM_PING_SECONDS",
        s.stream_ping_seconds,
        "seconds > 0",
    )


def _check_deployment(s: Settings) -> None:
    _require(s.log_format in LOG_FORMATS, "LOG_FORMAT", s.log_format, "json or text")
    try:
        proxy_networks(s.trusted_proxies)
    except ValueError:
        _require(
            False,
            "TRUSTED_PROXIES",
            s.trusted_proxies,
            "comma-separated IP addresses or networks such as 127.0.0.1,::1",
        )


def proxy_networks(value: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """TRUSTED_PROXIES as networks; a bare address is a network of one.

    Strict like gunicorn's forwarded_allow_ips: 10.0.0.1/8 is refused, since
    whoever wrote it meant either 10.0.0.1 or 10.0.0.0/8.
    """
    return tuple(ip_network(part.strip()) for part in value.split(",") if part.strip())


def _check_memory_backend(s: Settings) -> None:
    _require(
        s.memory_backend in MEMORY_BACKENDS,
        "MEMORY_BACKEND",
        s.memory_backend,
        "memory, sqlite or redis",
    )
    _require(s.redis_timeout > 0, "REDIS_TIMEOUT", s.redis_timeout, "seconds > 0")
    if s.memory_backend == "sqlite":
        parent = os.path.dirname(os.path.abspath(s.memory_sqlite_path))
        _require(
            bool(s.memory_sqlite_path.strip()) and os.path.isdir(parent),
            "MEMORY_SQLITE_PATH",
            s.memory_sqlite_path,
            "a file path in an existing directory",
        )
    if s.memory_backend == "redis":
        parts = urlsplit(s.redis_url)
        _require(
            parts.scheme in ("redis", "rediss", "unix")
            and bool(parts.hostname or parts.path),
            "REDIS_URL",
            s.redis_url,
            "a URL such as redis://127.0.0.1:6379/0",
        )


def api_keys_configured(s: Settings) -> bool:
    """Whether any key source is set; an API_KEYS_FILE without keys fails later."""
    return any(key.strip() for key in s.api_keys.split(",")) or bool(
        s.api_keys_file.strip()
    )


def is_loopback_bind(bind: str) -> bool:
    """True when every address of a gunicorn bind is reachable from this host only.

    Unix sockets count as local; `fd://` and host names other than localhost
    cannot be told apart from a LAN address, so they do not.
    """
    for address in filter(None, (part.strip() for part in bind.split(","))):
        if address.startswith("unix:"):
            continue
        if address.startswith("fd://"):
            return False
        address = address.removeprefix("tcp://")
        if address.startswith("["):
            host = address[1:].partition("]")[0]
        else:
            host = address.rpartition(":")[0] if ":" in address else address
        if host == "localhost":
            continue
        try:
            if not ipaddress.ip_address(host).is_loopback:
                return False
        except ValueError:
            return False
    return True


def _check_security(s: Settings) -> None:
    _require(
        api_keys_configured(s) or s.allow_unauthenticated or is_loopback_bind(s.bind),
        "BIND",
        s.bind,
        "a loopback address while no API keys are set (set API_KEYS or "
        "API_KEYS_FILE, or ALLOW_UNAUTHENTICATED=true to serve the network "
        "without keys)",
    )
    for variable, value in (
        ("RATE_LIMIT_CHAT", s.rate_limit_chat),
        ("RATE_LIMIT_DEFAULT", s.rate_limit_default),
    ):
        if not value.strip():
            continue
        # Imported only when a limit is set: limits costs about 3 MB per process.
        from limits import parse_many

        try:
            parsed = parse_many(value.strip())
        except ValueError:
            parsed = []
        _require(
            bool(parsed) and all(item.amount >= 1 for item in parsed),
            variable,
            value,
            "limits such as 30/minute;500/day (empty for none)",
        )
    for origin in filter(None, (o.strip() for o in s.cors_origins.split(","))):
        _require(
            origin == "*" or CORS_ORIGIN_PATTERN.fullmatch(origin) is not None,
            "CORS_ORIGINS",
            s.cors_origins,
            "origins such as http://192.168.1.20:8080 (scheme://host[:port], "
            "no path), comma-separated, or *",
        )
    _require(
        s.max_concurrent_generations >= 1,
        "MAX_CONCURRENT_GENERATIONS",
        s.max_concurrent_generations,
        "an integer >= 1",
    )
    _require(
        s.max_queued_generations >= 0,
        "MAX_QUEUED_GENERATIONS",
        s.max_queued_generations,
        "an integer >= 0",
    )
    _require(
        s.max_queue_wait_seconds > 0,
        "MAX_QUEUE_WAIT_SECONDS",
        s.max_queue_wait_seconds,
        "seconds > 0",
    )
    _require(
        s.max_generation_seconds > 0,
        "MAX_GENERATION_SECONDS",
        s.max_generation_seconds,
        "seconds > 0",
    )


_CHECKS: tuple[Callable[[Settings], None], ...] = (
    _check_numbers,
    _check_text,
    _check_streams,
    _check_deployment,
    _check_memory_backend,
    _check_security,
)
