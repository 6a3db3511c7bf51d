"""The one typed, immutable settings object, read once from the environment and .env.

Each field declares its default, its help (docs/configuration.md is checked
against it) and the rule its value must follow; a value is parsed by the
field's real type. Rules that tie several fields together are the named
functions in CROSS_CHECKS. A value piagent cannot run with stops start-up with
one line naming the variable, the value and what was expected.
"""

from __future__ import annotations

import math
import os
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from ipaddress import ip_address, ip_network
from types import MappingProxyType
from typing import Any, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from decouple import Config, RepositoryEmpty, RepositoryEnv

PROVIDERS = ("ollama", "openai")
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("debug", "info", "warning", "error")
MEMORY_BACKENDS = ("memory", "sqlite", "redis")
STATE_BACKENDS = ("local", "redis")
KEEP_ALIVE_PATTERN = re.compile(r"-?\d+|-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+")
CORS_ORIGIN_PATTERN = re.compile(
    r"https?://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?"
)
# One label of a DNS name, as a Host header may carry it (letters, digits, `-`).
HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
HOST_PORT = re.compile(r"\d{1,5}")
# Per-agent model variables: the prefix, then the agent's name (see agents.py).
MODEL_PREFIXES = {"ollama": "OLLAMA_MODEL_", "openai": "OPENAI_MODEL_"}

# A rule: None when the value is fine, else what was expected instead.
Rule = Callable[[Any], str | None]


class SettingsError(ValueError):
    """A setting has a value piagent cannot run with; the message is one line."""


def setting(
    default: Any,
    help: str,
    check: Rule | None = None,
    *,
    secret: bool = False,
    aliases: tuple[str, ...] = (),
) -> Any:
    """A settings field: its default, one line of help, the rule for its value,
    older variable names that still set it, and whether repr() may show it."""
    return field(
        default=default,
        repr=not secret,
        metadata={"help": help, "check": check, "aliases": aliases},
    )


# --- Rules for one value ----------------------------------------------------


def at_least(lowest: float, unit: str) -> Rule:
    return lambda value: None if value >= lowest else f"{unit} >= {lowest:g}"


def above(lowest: float, unit: str) -> Rule:
    return lambda value: None if value > lowest else f"{unit} > {lowest:g}"


def between(lowest: float, highest: float) -> Rule:
    return lambda value: (
        None if lowest <= value <= highest else f"{lowest:g} to {highest:g}"
    )


def one_of(choices: tuple[str, ...], expected: str) -> Rule:
    return lambda value: None if value in choices else expected


def fullmatch(pattern: re.Pattern[str], expected: str) -> Rule:
    return lambda value: None if pattern.fullmatch(value) else expected


def not_blank(expected: str) -> Rule:
    return lambda value: None if value.strip() else expected


def http_url(example: str) -> Rule:
    def check(value: str) -> str | None:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or " " in value:
            return f"an http(s) URL such as {example}"
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            return "a URL with a valid port"
        return None

    return check


def http_urls(example: str) -> Rule:
    """One http(s) URL, or several separated by commas (one model host each).

    A single URL is checked, and refused, exactly as by `http_url`; in a list
    the message names the item that is wrong, and a host listed twice is
    refused since it would get twice the share of conversations.
    """
    one = http_url(example)

    def check(value: str) -> str | None:
        items = value.split(",")
        if len(items) == 1:
            return one(value)
        seen: set[str] = set()
        for item in (part.strip() for part in items):
            problem = one(item) if item else "not an empty item"
            if problem is not None:
                return f"comma-separated hosts, each {problem} ({item!r} is not)"
            if item.rstrip("/") in seen:
                return f"each host once ({item!r} is listed twice)"
            seen.add(item.rstrip("/"))
        return None

    return check


def ip_networks(value: str) -> str | None:
    try:
        for part in comma_list(value):
            ip_network(part)
    except ValueError:
        return "comma-separated IP addresses or networks such as 127.0.0.1,::1"
    return None


def rate_limits(value: str) -> str | None:
    if not value.strip():
        return None
    # Imported only when a limit is set: limits costs about 3 MB per process.
    from limits import parse_many

    try:
        parsed = parse_many(value.strip())
    except ValueError:
        parsed = []
    if parsed and all(item.amount >= 1 for item in parsed):
        return None
    return "limits such as 30/minute;500/day (empty for none)"


def host_entry(entry: str) -> tuple[str, str] | None:
    """One ALLOWED_HOSTS entry as ("name" | "domain" | "address", value), or
    None when it is no host: a port is dropped, a name lower-cased (a Unicode
    name in its xn-- form), an address written as ipaddress writes it.
    `*.example` is the domain `example` (it and its subdomains); IPv6 comes
    bare (`::1`) or in brackets (`[::1]`, `[::1]:8000`)."""
    text = entry.strip().lower()
    if text.startswith("["):
        inside, closed, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
        if not closed or (rest and (rest == port or not HOST_PORT.fullmatch(port))):
            return None
        return _address(inside, ipv6=True)
    if text.count(":") > 1:
        return _address(text, ipv6=True)  # a bare IPv6 address carries no port
    name, colon, port = text.partition(":")
    if colon and not HOST_PORT.fullmatch(port):
        return None
    domain = name.startswith("*.")
    name = name.removeprefix("*.")
    address = _address(name, ipv6=False)
    if address is not None:
        return None if domain else address
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = name.split(".")
    if len(name) > 253 or not all(HOST_LABEL.fullmatch(label) for label in labels):
        return None
    return ("domain" if domain else "name", name)


def _address(text: str, ipv6: bool) -> tuple[str, str] | None:
    if "%" in text:
        return None  # a zone (fe80::1%eth0) never reaches a Host header
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if (address.version == 6) is not ipv6:
        return None
    return ("address", str(address))


def allowed_hosts(value: str) -> str | None:
    entries = comma_list(value)
    if entries == ["*"]:
        return None
    if all(entry != "*" and host_entry(entry) is not None for entry in entries):
        return None
    return (
        "host names or addresses such as pi.local,*.example.org,192.168.1.20,::1 "
        "(no scheme or path; ports are ignored), comma-separated, or * alone for any"
    )


def cors_origins(value: str) -> str | None:
    for origin in comma_list(value):
        if origin != "*" and CORS_ORIGIN_PATTERN.fullmatch(origin) is None:
            return (
                "origins such as http://192.168.1.20:8080 (scheme://host[:port], "
                "no path), comma-separated, or *"
            )
    return None


@dataclass(frozen=True)
class Settings:
    """Everything piagent can be configured with; each field is one variable,
    named like the field in upper case."""

    provider: str = setting(
        "ollama",
        "Model server: `ollama`, or `openai` for any OpenAI-compatible server "
        "(llama-server, LM Studio, vLLM).",
        one_of(PROVIDERS, f"one of {PROVIDERS}"),
    )
    ollama_host: str = setting(
        "http://127.0.0.1:11434",
        "Base URL of Ollama; several, comma-separated, spread conversations "
        "over several model hosts (docs/hosts.md).",
        http_urls("http://127.0.0.1:11434"),
    )
    ollama_model_general: str = setting(
        "qwen2.5:3b-instruct",
        "Model for agents that name none and have no `OLLAMA_MODEL_<AGENT>`.",
        not_blank("a model name such as qwen2.5:3b-instruct"),
    )
    model_timeout: float = setting(
        300.0,
        "Seconds to wait for the model server's first byte and between bytes "
        "(never for a whole reply); a cold Pi must load the model first, and "
        "giving up aborts the load. OLLAMA_TIMEOUT is its older name.",
        above(0, "seconds"),
        aliases=("OLLAMA_TIMEOUT",),
    )
    model_connect_timeout: float = setting(
        3.0,
        "Seconds to wait for a TCP connection to the model server; keeps 'it is "
        "down' fast. OLLAMA_CONNECT_TIMEOUT is its older name.",
        above(0, "seconds"),
        aliases=("OLLAMA_CONNECT_TIMEOUT",),
    )
    ollama_keep_alive: str = setting(
        "5m",
        "How long Ollama keeps the model loaded after a request (`5m`, `1h`, `-1`).",
        fullmatch(
            KEEP_ALIVE_PATTERN, "seconds or a duration such as 5m, 1h or -1 (forever)"
        ),
    )
    ctx_tokens: int = setting(
        2048,
        "Context window asked of the model (num_ctx).",
        at_least(256, "an integer"),
    )
    max_tokens: int = setting(
        200,
        "Most tokens in one reply (num_predict); below CTX_TOKENS.",
    )
    temperature: float = setting(0.7, "Sampling temperature, 0 to 2.", between(0, 2))
    enable_memory: bool = setting(True, "Keep recent turns per conversation id.")
    memory_max_turns: int = setting(
        8,
        "Stored messages (user or assistant) per conversation.",
        at_least(0, "an integer"),
    )
    memory_trim_to: int = setting(
        0,
        "Messages kept when a conversation outgrows MEMORY_MAX_TURNS or the "
        "token budget: the oldest whole exchanges go in one cut down to this "
        "many, so the model's prompt cache stays warm between cuts.",
        at_least(0, "an integer"),
    )
    memory_ttl_min: float = setting(
        60,
        "Minutes after which an idle conversation ends.",
        above(0, "minutes"),
    )
    memory_max_conversations: int = setting(
        500,
        "Conversations kept; the least recently used goes first.",
        at_least(1, "an integer"),
    )
    agents_dir: str = setting(
        "",
        "Directory of extra agents (`<name>.md`), adding to or overriding built-ins.",
    )
    agent_models: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}),
        metadata={
            "help": "Model of one agent, e.g. `OLLAMA_MODEL_CODER` (the agent's name "
            "in upper case, `-` as `_`), or `OPENAI_MODEL_<AGENT>` with "
            "PROVIDER=openai; one naming no agent is warned about at start-up.",
            "variable": False,
        },
    )
    max_body_bytes: int = setting(
        65536, "Largest accepted request body in bytes.", at_least(1024, "bytes")
    )
    max_message_chars: int = setting(
        4000,
        "Longest accepted message in characters.",
        at_least(1, "an integer"),
    )
    log_level: str = setting(
        "info",
        "Log level of piagent and gunicorn: debug, info, warning or error.",
        lambda value: (
            None if value.lower() in LOG_LEVELS else "debug, info, warning or error"
        ),
    )
    # --- OpenAI-compatible model server (PROVIDER=openai) ---
    openai_base_url: str = setting(
        "http://127.0.0.1:8080/v1",
        "Base URL of an OpenAI-compatible server, up to and including /v1; "
        "several, comma-separated, as with OLLAMA_HOST.",
        http_urls("http://127.0.0.1:8080/v1"),
    )
    openai_api_key: str = setting(
        "", "Bearer key for that server; empty sends none.", secret=True
    )
    openai_model_general: str = setting(
        "qwen2.5-3b-instruct",
        "Model for agents that name none and have no `OPENAI_MODEL_<AGENT>`.",
        not_blank("a model name as the server's GET /v1/models lists it"),
    )
    # --- Several model hosts (docs/hosts.md) ---
    host_cooldown_seconds: float = setting(
        5.0,
        "With several model hosts: seconds a host that failed is left out; "
        "doubled at each failure in a row, up to HOST_COOLDOWN_MAX_SECONDS.",
        above(0, "seconds"),
    )
    host_cooldown_max_seconds: float = setting(
        60.0,
        "Longest cooldown of a host that keeps failing.",
        above(0, "seconds"),
    )
    host_probe_seconds: float = setting(
        10.0,
        "With several model hosts: seconds between each worker's checks of "
        "every host's model list, which bring hosts back and learn their models.",
        above(0, "seconds"),
    )
    # --- Streams: SSE and NDJSON ---
    stream_prime_seconds: float = setting(
        5.0,
        "Seconds an SSE or NDJSON stream waits for the first token before it "
        "answers 200 and sends pings; failures within it get their real status.",
        at_least(0, "seconds"),
    )
    stream_ping_seconds: float = setting(
        10.0,
        "Seconds between pings of an SSE or NDJSON stream while the model is silent.",
        above(0, "seconds"),
    )
    # --- Deployment: proxies, request logs, warm-up ---
    trusted_proxies: str = setting(
        "127.0.0.1,::1",
        "Comma-separated addresses or networks of reverse proxies whose "
        "X-Forwarded-For / X-Real-IP name the client; empty trusts none.",
        ip_networks,
    )
    log_format: str = setting(
        "text",
        "Request log lines on stdout: `json` (one object per line) or `text`.",
        one_of(LOG_FORMATS, "json or text"),
    )
    log_content: bool = setting(
        False, "Also log message and reply text in request log lines (private data)."
    )
    warmup: bool = setting(
        False, "Load the general agent's model into Ollama when a worker starts."
    )
    # --- Memory backends: durable and shared conversation memory ---
    memory_backend: str = setting(
        "memory",
        "Where conversations live: `memory` (in-process), `sqlite` or `redis`.",
        one_of(MEMORY_BACKENDS, "memory, sqlite or redis"),
    )
    memory_sqlite_path: str = setting(
        "piagent-memory.sqlite3",
        "SQLite file of MEMORY_BACKEND=sqlite (relative to the working directory).",
    )
    redis_url: str = setting(
        "redis://127.0.0.1:6379/0",
        "Redis of MEMORY_BACKEND=redis and STATE_BACKEND=redis: "
        "redis://[:password@]host:port/db, rediss:// or unix:///path.sock.",
    )
    redis_timeout: float = setting(
        1.0,
        "Seconds to connect to Redis or wait for its answer before a 503.",
        above(0, "seconds"),
    )
    # --- Monitoring ---
    metrics: bool = setting(
        False,
        "Serve Prometheus metrics at /metrics (behind the API key when keys are "
        "on; never rate limited); costs about 1-2 MB per worker (docs/metrics.md).",
    )
    # --- Shared state: one budget for several processes (docs/deploy.md) ---
    state_backend: str = setting(
        "local",
        "Where rate limits and generation slots are counted: `local` (each "
        "worker alone) or `redis` (REDIS_URL, shared by every worker and machine).",
        one_of(STATE_BACKENDS, "local or redis"),
    )
    slot_lease_seconds: float = setting(
        5.0,
        "With STATE_BACKEND=redis: seconds a generation slot is leased for, renewed "
        "while the generation runs; a killed worker's slot is free again after it.",
        between(1, 600),
    )
    # --- Browser: the chat page and the API's own description ---
    web_ui: bool = setting(
        True,
        "Serve the chat page at / (and its files under /static/); false: / is a 404.",
    )
    api_docs: bool = setting(
        True,
        "Serve the OpenAPI document at /openapi.json and its viewer at /docs, "
        "without a key; false: both are 404s.",
    )
    # --- LAN security: API keys, rate limits, CORS, the generation queue ---
    bind: str = setting(
        "127.0.0.1:8000",
        "Where gunicorn listens; gunicorn.conf.py hands piagent gunicorn's real "
        "bind, so a non-loopback one without API keys can be refused.",
    )
    api_keys: str = setting(
        "",
        "Comma-separated API keys, each its own owner (`key-` and 10 hex digits "
        "of its SHA-256); empty: none from here.",
        secret=True,
    )
    api_keys_file: str = setting(
        "",
        "File of API keys, one a line: `NAME KEY`, `NAME sha256:HEX` or `KEY`; "
        "`#` comments. `python -m piagent keys` edits it; re-read on SIGHUP to the "
        "workers (`systemctl reload piagent`).",
    )
    allow_unauthenticated: bool = setting(
        False,
        "Serve a non-loopback address without API keys (anyone there may use it).",
    )
    rate_limit_chat: str = setting(
        "30/minute",
        "Limits on POST /chat, /v1/chat/completions and /ollama/api/chat together, "
        "per key owner (or client address), e.g. 30/minute;500/day; empty: none.",
        rate_limits,
    )
    rate_limit_default: str = setting(
        "120/minute",
        "Limits on the other endpoints except /health, the chat page and the API "
        "docs, per key owner or address; empty: none.",
        rate_limits,
    )
    cors_origins: str = setting(
        "",
        "Comma-separated browser origins allowed to call piagent; empty: no CORS.",
        cors_origins,
    )
    allowed_hosts: str = setting(
        "",
        "Host names and addresses piagent answers to (the request's Host), "
        "comma-separated; ports ignored, `*.example` for a domain and its "
        "subdomains, `*` alone for any (warned about). Empty: localhost, "
        "*.localhost, 127.0.0.1, ::1, this machine's name and <name>.local, and "
        "BIND's address (every interface's address when BIND is 0.0.0.0 or ::).",
        allowed_hosts,
    )
    max_concurrent_generations: int = setting(
        1,
        "Generations talking to the model at once (like OLLAMA_NUM_PARALLEL).",
        at_least(1, "an integer"),
    )
    max_queued_generations: int = setting(
        4,
        "Requests that may wait for a generation slot; more get a 503.",
        at_least(0, "an integer"),
    )
    max_queue_wait_seconds: float = setting(
        300.0,
        "Longest a request waits in line for a generation slot before a 503.",
        above(0, "seconds"),
    )
    max_generation_seconds: float = setting(
        600.0,
        "Deadline of one whole generation, first byte to last, in seconds.",
        above(0, "seconds"),
    )
    # --- Ollama's own API under /ollama (Home Assistant, the ollama clients) ---
    ollama_api: bool = setting(
        True,
        "Serve Ollama's API under /ollama (each agent a model `<agent>:latest`); "
        "false: every /ollama path is a 404.",
    )
    ollama_api_client_load_options: bool = setting(
        False,
        "Let /ollama clients choose options.num_ctx and keep_alive; false: "
        "CTX_TOKENS and OLLAMA_KEEP_ALIVE are sent whatever they ask, since any "
        "other value makes Ollama reload the model.",
    )
    # --- Tools: agents that call clock, calculator, http ---
    max_tool_steps: int = setting(
        4,
        "Rounds of tool calls one /chat turn may run (model, tools, model, ...); "
        "past them the turn ends with a note. Tool agents only.",
        between(1, 32),
    )

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "agent_models", MappingProxyType(dict(self.agent_models))
        )
        for spec in variable_fields():
            _check_field(spec, variable_name(spec), getattr(self, spec.name))
        for check in CROSS_CHECKS:
            check(self)

    @property
    def general_model(self) -> str:
        """The model of agents that name none, from the provider's own variable."""
        if self.provider == "openai":
            return self.openai_model_general
        return self.ollama_model_general

    @property
    def model_hosts(self) -> list[str]:
        """The model server's base URLs: one, or several (OLLAMA_HOST or
        OPENAI_BASE_URL, by PROVIDER), without trailing slashes."""
        value = self.openai_base_url if self.provider == "openai" else self.ollama_host
        return [host.rstrip("/") for host in comma_list(value)]

    @property
    def memory_ttl_seconds(self) -> float:
        return self.memory_ttl_min * 60

    @classmethod
    def from_env(cls, config: Config | None = None, env_file: str = ".env") -> Settings:
        """Read every variable once; `env_file` (`.env` in the working
        directory) fills gaps.

        Every OLLAMA_MODEL_<AGENT> (OPENAI_MODEL_<AGENT> with PROVIDER=openai)
        is collected into `agent_models`; agents.py matches them to agents and
        warns about any that names none.
        """
        config = config or _config(env_file)
        values: dict[str, Any] = {}
        kinds = get_type_hints(cls)
        for spec in variable_fields():
            found = _read(config, spec, kinds[spec.name])
            if found is not None:
                variable, value = found
                _check_field(spec, variable, value)
                values[spec.name] = value
        prefix = MODEL_PREFIXES[values.get("provider", "ollama")]
        declared = {variable_name(spec) for spec in variable_fields()}
        values["agent_models"] = {
            name: model
            for name in _variable_names(config)
            if name.startswith(prefix) and name not in declared
            if (model := str(config(name, default="")).strip())
        }
        return cls(**values)


def _config(env_file: str = ".env") -> Config:
    """The environment, then `env_file` (`.env` in the working directory)."""
    repo = RepositoryEnv(env_file) if os.path.isfile(env_file) else RepositoryEmpty()
    return Config(repo)


def environment_value(name: str) -> str | None:
    """A variable that is not a setting but named by one (an agent file's
    `http.token_env`), read like the settings: the environment, then `.env`.
    Never logged: it is a secret."""
    value = _config()(name, default=None)
    return None if value is None else str(value)


def variable_fields() -> list[Field[Any]]:
    """The fields read from a variable of their own (all but agent_models)."""
    return [spec for spec in fields(Settings) if spec.metadata.get("variable", True)]


def variable_name(spec: Field[Any]) -> str:
    return spec.name.upper()


def _read(config: Config, spec: Field[Any], kind: Any) -> tuple[str, Any] | None:
    """(the variable that set the field, its parsed value), or None if unset.

    A field's older names still set it; setting two of its names to different
    values is refused, since one of them would be ignored without a word.
    """
    found: list[tuple[str, str, Any]] = []
    for variable in (variable_name(spec), *spec.metadata["aliases"]):
        raw = config(variable, default=None)
        if raw is not None:
            found.append((variable, raw, parse_value(variable, raw, kind)))
    if len({value for _, _, value in found}) > 1:
        named = " and ".join(f"{variable}={raw!r}" for variable, raw, _ in found)
        raise SettingsError(
            f"{named}: expected one of them ({', '.join(spec.metadata['aliases'])} "
            f"is the older name of {variable_name(spec)})"
        )
    return (found[0][0], found[0][2]) if found else None


def _variable_names(config: Config) -> list[str]:
    """Every variable the environment and the .env file define.

    decouple only answers for names it is asked about; its RepositoryEnv keeps
    a file's names in `data` (a plain attribute, read here and nowhere else;
    tests/test_settings.py fails if it goes away).
    """
    from_file = getattr(config.repository, "data", {})
    return sorted(set(os.environ) | set(from_file))


def parse_value(variable: str, raw: str, kind: Any) -> Any:
    """`raw` as the type `kind` (bool, int, float, str, or X | None)."""
    raw = raw.strip()
    if get_origin(kind) in (Union, types.UnionType):
        [inner] = [arg for arg in get_args(kind) if arg is not type(None)]
        return None if raw == "" else parse_value(variable, raw, inner)
    if kind is bool:
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{variable}={raw!r}: expected true or false")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{variable}={raw!r}: expected an integer") from None
    if kind is float:
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{variable}={raw!r}: expected a number") from None
        if not math.isfinite(value):
            raise SettingsError(f"{variable}={raw!r}: expected a finite number")
        return value
    if kind is str:
        return raw
    raise TypeError(f"{variable}: no parser for {kind!r}")


def _check_field(spec: Field[Any], variable: str, value: Any) -> None:
    check: Rule | None = spec.metadata["check"]
    if check is None or value is None:
        return
    expected = check(value)
    if expected is not None:
        raise SettingsError(f"{variable}={value!r}: expected {expected}")


def comma_list(value: str) -> list[str]:
    """The non-empty, stripped items of a comma-separated setting."""
    return [item.strip() for item in value.split(",") if item.strip()]


# --- Rules that tie fields together ------------------------------------------


def _require(condition: bool, variable: str, value: Any, expected: str) -> None:
    if not condition:
        raise SettingsError(f"{variable}={value!r}: expected {expected}")


def max_tokens_fits_the_context(s: Settings) -> None:
    _require(
        1 <= s.max_tokens < s.ctx_tokens,
        "MAX_TOKENS",
        s.max_tokens,
        f"an integer from 1 to CTX_TOKENS-1 ({s.ctx_tokens - 1})",
    )


def trim_below_max_turns(s: Settings) -> None:
    # MEMORY_MAX_TURNS=0 keeps no history at all: there is nothing to cut.
    _require(
        s.memory_max_turns == 0 or s.memory_trim_to < s.memory_max_turns,
        "MEMORY_TRIM_TO",
        s.memory_trim_to,
        f"an integer from 0 to MEMORY_MAX_TURNS-1 ({s.memory_max_turns - 1})",
    )


def sqlite_file_in_a_directory(s: Settings) -> None:
    if s.memory_backend != "sqlite":
        return
    parent = os.path.dirname(os.path.abspath(s.memory_sqlite_path))
    _require(
        bool(s.memory_sqlite_path.strip()) and os.path.isdir(parent),
        "MEMORY_SQLITE_PATH",
        s.memory_sqlite_path,
        "a file path in an existing directory",
    )


def redis_url_names_a_server(s: Settings) -> None:
    if s.memory_backend != "redis" and s.state_backend != "redis":
        return
    parts = urlsplit(s.redis_url)
    _require(
        parts.scheme in ("redis", "rediss", "unix")
        and bool(parts.hostname or parts.path),
        "REDIS_URL",
        s.redis_url,
        "a URL such as redis://127.0.0.1:6379/0",
    )


def cooldown_within_its_cap(s: Settings) -> None:
    _require(
        s.host_cooldown_seconds <= s.host_cooldown_max_seconds,
        "HOST_COOLDOWN_SECONDS",
        s.host_cooldown_seconds,
        f"at most HOST_COOLDOWN_MAX_SECONDS ({s.host_cooldown_max_seconds:g})",
    )


CROSS_CHECKS: tuple[Callable[[Settings], None], ...] = (
    max_tokens_fits_the_context,
    trim_below_max_turns,
    sqlite_file_in_a_directory,
    redis_url_names_a_server,
    cooldown_within_its_cap,
)
