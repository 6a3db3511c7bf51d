"""Built-in tools an agent file may name (`tools: clock, calculator, http`).

Each tool's settings sit in the same header as `<tool>.<setting>: value`
lines; `build_toolbox` checks them all and builds the agent's Toolbox, or
raises ToolConfigError naming what is wrong (start-up stops on it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from piagent.tools import calculator, clock, http
from piagent.tools.base import (
    Outcome,
    Tool,
    Toolbox,
    ToolConfigError,
    ToolError,
    error_text,
)

__all__ = [
    "KINDS",
    "Outcome",
    "Tool",
    "ToolConfigError",
    "ToolError",
    "Toolbox",
    "build_toolbox",
    "error_text",
]

log = logging.getLogger("piagent")


@dataclass(frozen=True)
class Kind:
    """A tool an agent may name: its settings and how it is built from them."""

    name: str
    settings: tuple[str, ...]
    build: Callable[..., Tool]
    repeatable: tuple[str, ...] = field(default=())


KINDS = {
    kind.name: kind
    for kind in (
        Kind(clock.NAME, clock.SETTINGS, clock.build),
        Kind(calculator.NAME, calculator.SETTINGS, calculator.build),
        Kind(http.NAME, http.SETTINGS, http.build, http.REPEATABLE),
    )
}


def build_toolbox(
    names: list[str],
    settings: Mapping[str, list[str]],
    *,
    environ: Callable[[str], str | None],
    resolver: http.Resolver = http.resolve,
    source: str = "",
) -> Toolbox | None:
    """The tools named (comma-separated values of `tools:` lines) with their
    `<tool>.<setting>` values; None when no tool is named."""
    chosen = [n.strip() for value in names for n in value.split(",") if n.strip()]
    chosen = list(dict.fromkeys(chosen))
    for name in chosen:
        if name not in KINDS:
            raise ToolConfigError(
                f"tools: unknown tool {name!r}; the tools are {', '.join(KINDS)}"
            )
    grouped: dict[str, dict[str, list[str]]] = {name: {} for name in chosen}
    for key, values in settings.items():
        owner, _, setting = key.partition(".")
        kind = KINDS.get(owner)
        if kind is None or setting not in kind.settings:
            raise ToolConfigError(f"{key}: {_known_settings()}")
        if owner not in grouped:
            raise ToolConfigError(f"{key}: {owner} is not in this agent's tools: line")
        if len(values) > 1 and setting not in kind.repeatable:
            raise ToolConfigError(f"{key}: given {len(values)} times; give it once")
        grouped[owner][setting] = values
    if not chosen:
        return None
    tools = [
        KINDS[name].build(grouped[name], environ=environ, resolver=resolver)
        for name in chosen
    ]
    for tool in tools:
        if isinstance(tool, http.HttpTool):
            for problem in tool.pin():
                log.warning(
                    "%s: the http tool's %s; it is tried again at its first use, "
                    "and kept once it resolves",
                    source or "an agent",
                    problem,
                )
    return Toolbox(tools)


def _known_settings() -> str:
    names = [f"{k.name}.{s}" for k in KINDS.values() for s in k.settings]
    return f"not a tool setting; the settings are {', '.join(names)}"
