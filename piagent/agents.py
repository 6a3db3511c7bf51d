"""Agents: a name, a system prompt, a model and tools, read from prompt files."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from piagent.settings import MODEL_PREFIXES, Settings, SettingsError, environment_value
from piagent.tools import Toolbox, ToolConfigError, build_toolbox
from piagent.tools.http import Resolver, resolve

log = logging.getLogger("piagent")

AGENT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
BUILTIN_DIR = Path(__file__).with_name("prompts")
SUFFIX = ".md"
HEADER_KEYS = ("model", "tools")
# `<tool>.<setting>` keys: a tool's name, a dot, a setting name.
TOOL_SETTING = re.compile(r"[a-z]+\.[a-z_]+")
Header = dict[str, list[str]]


@dataclass(frozen=True)
class Agent:
    """A name a request may use, the system prompt it puts first, its model,
    and its tools (None: it has none, and its turns are plain chat)."""

    name: str
    system_prompt: str
    model: str
    tools: Toolbox | None = None


def is_agent_name(name: str) -> bool:
    """Names double as file names, so only a safe pattern may reach the disk."""
    return AGENT_NAME.fullmatch(name) is not None


def _agent_files(directory: Path) -> dict[str, Path]:
    return {
        path.name[: -len(SUFFIX)]: path
        for path in sorted(directory.glob("*" + SUFFIX))
        if path.is_file() and is_agent_name(path.name[: -len(SUFFIX)])
    }


def _directories(agents_dir: str) -> list[Path]:
    directories = [BUILTIN_DIR]
    if agents_dir:
        path = Path(agents_dir).expanduser()
        if not path.is_dir():
            raise SettingsError(f"AGENTS_DIR={agents_dir!r}: expected a directory")
        directories.append(path)
    return directories


def agent_model_variable(agent: str, provider: str = "ollama") -> str:
    """OLLAMA_MODEL_<AGENT> (OPENAI_MODEL_<AGENT> with PROVIDER=openai): upper
    case, with `-` as `_` so shells accept it."""
    return MODEL_PREFIXES[provider] + agent.upper().replace("-", "_")


def parse_agent_file(text: str, source: str) -> tuple[Header, str]:
    """Split an optional `---` header of `key: value` lines from the prompt.

    A header lets one file carry its model and tools, so an agent is copied as
    one file. Keys are `model`, `tools` and `<tool>.<setting>`; a key may come
    on several lines (its values are kept in order: `tools` and `http.allow`
    add up, the others say it once).
    """
    header: Header = {}
    if text.startswith("---\n"):
        end = text.find("\n---\n", 3)
        if end < 0:
            raise SettingsError(f"{source}: header opened with --- is never closed")
        for line in text[4:end].splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            key, sep, value = line.partition(":")
            key = key.strip().lower()
            if not sep or not (key in HEADER_KEYS or TOOL_SETTING.fullmatch(key)):
                raise SettingsError(
                    f"{source}: header line {line!r}: expected one of "
                    f"{', '.join(k + ': ...' for k in HEADER_KEYS)} or "
                    "<tool>.<setting>: ..."
                )
            header.setdefault(key, []).append(value.strip())
        text = text[end + 5 :]
    prompt = text.strip()
    if not prompt:
        raise SettingsError(f"{source}: the system prompt is empty")
    return header, prompt


def load_agents(
    settings: Settings,
    environ: Callable[[str], str | None] = environment_value,
    resolver: Resolver = resolve,
) -> dict[str, Agent]:
    """Read every agent once at start-up; a broken file stops start-up by name.

    `environ` looks up the variables agent files name (the http tool's
    token); `resolver` resolves the http tool's hosts, once, here.
    """
    files: dict[str, Path] = {}
    for directory in _directories(settings.agents_dir):
        files.update(_agent_files(directory))
    agents = {}
    for name, path in sorted(files.items()):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{path}: cannot read agent file ({exc})") from None
        header, prompt = parse_agent_file(text, str(path))
        if len(header.get("model", [])) > 1:
            raise SettingsError(f"{path}: model: given more than once")
        variable = agent_model_variable(name, settings.provider)
        model = (
            header.get("model", [""])[0]
            or settings.agent_models.get(variable)
            or settings.general_model
        )
        try:
            tools = build_toolbox(
                header.get("tools", []),
                {k: v for k, v in header.items() if k not in HEADER_KEYS},
                environ=environ,
                resolver=resolver,
                source=str(path),
            )
        except ToolConfigError as exc:
            raise SettingsError(f"{path}: {exc}") from None
        agents[name] = Agent(name=name, system_prompt=prompt, model=model, tools=tools)
    _warn_about_unused_models(settings, agents)
    return agents


def _warn_about_unused_models(settings: Settings, agents: dict[str, Agent]) -> None:
    """A per-agent model variable that names no agent is most likely misspelt."""
    used = {agent_model_variable(name, settings.provider) for name in agents}
    for variable in sorted(set(settings.agent_models) - used):
        log.warning(
            "%s is set but names no agent (agents: %s); it is ignored",
            variable,
            ", ".join(sorted(agents)),
        )
