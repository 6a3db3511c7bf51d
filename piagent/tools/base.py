"""The tool protocol, the checks every call goes through, and an agent's toolbox.

A tool is a name, a description, the JSON schema of its arguments and a
`run(arguments) -> str`. The toolbox is the only caller: it parses the model's
arguments, checks them against the schema, runs the tool and turns every
failure into text for the model (`{"error": "..."}`), so nothing a model asks
for can become a 500. Tools know nothing of Flask, memory or the chat service.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("piagent")

# JSON Schema's types, as Python checks them; a bool is not a number here.
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


class ToolError(Exception):
    """What went wrong, for the model: it becomes {"error": "<message>"}."""


class ToolConfigError(ValueError):
    """A tool's settings in an agent file are wrong; start-up stops on it."""


class Tool(Protocol):
    """One built-in tool, configured for one agent.

    `parameters` is the JSON schema of the arguments object the model sends;
    the toolbox checks it before `run` is called. `run` returns the text the
    model reads and raises ToolError for anything the model should be told.
    It must be bounded in time and size: it runs in the worker's event loop.
    """

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def parameters(self) -> Mapping[str, Any]: ...

    def run(self, arguments: dict[str, Any]) -> str: ...


@dataclass(frozen=True)
class Outcome:
    """A call's result: the full text for the model, whether it failed, how long."""

    content: str
    error: bool
    seconds: float


def error_text(message: str) -> str:
    """The tool message of a failure, as the model reads it."""
    return json.dumps({"error": message}, ensure_ascii=False)


def object_schema(
    properties: Mapping[str, Any], required: Sequence[str] = ()
) -> dict[str, Any]:
    """The schema of an arguments object with these properties and no others."""
    return {
        "type": "object",
        "properties": dict(properties),
        "required": list(required),
        "additionalProperties": False,
    }


def check_arguments(schema: Mapping[str, Any], arguments: Any) -> str | None:
    """Why `arguments` do not match a tool's schema, or None if they do.

    Only what the built-in tools' schemas use: an object, its properties'
    types, `enum`, `maxLength`, `required` and `additionalProperties: false`.
    """
    if not isinstance(arguments, dict):
        return "arguments must be a JSON object"
    properties: Mapping[str, Any] = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in arguments:
            return f"{name!r} is required"
    for name, value in arguments.items():
        spec = properties.get(name)
        if spec is None:
            known = ", ".join(properties) or "none"
            return f"unknown argument {name!r} (arguments: {known})"
        kind = spec.get("type")
        if kind in _TYPES and (
            not isinstance(value, _TYPES[kind])
            or (isinstance(value, bool) and kind != "boolean")
        ):
            return f"{name!r} must be a JSON {kind}"
        if "enum" in spec and value not in spec["enum"]:
            return f"{name!r} must be one of {', '.join(map(str, spec['enum']))}"
        if "maxLength" in spec and isinstance(value, str):
            if len(value) > spec["maxLength"]:
                return f"{name!r} is longer than {spec['maxLength']} characters"
    return None


def parse_arguments(text: str) -> Any:
    """The model's arguments text as JSON; empty means no arguments."""
    if not text.strip():
        return {}
    try:
        return json.loads(text)
    except ValueError:
        raise ToolError("the arguments are not valid JSON") from None


def definition(tool: Tool) -> dict[str, Any]:
    """The tool as a model server is told about it (OpenAI's function format,
    which Ollama takes as it is)."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": dict(tool.parameters),
        },
    }


class Toolbox:
    """An agent's tools, and the one place their calls are made.

    The definitions are built once, at start-up, so every request of the
    agent offers the model the same bytes (the prompt cache stays warm).
    """

    def __init__(self, tools: Sequence[Tool]) -> None:
        self._tools = {tool.name: tool for tool in tools}
        self.definitions: tuple[dict[str, Any], ...] = tuple(map(definition, tools))

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def call(self, name: str, arguments: str) -> Outcome:
        """Run one call the model made; every failure is text for the model."""
        started = time.monotonic()
        error = True
        try:
            tool = self._tools.get(name)
            if tool is None:
                raise ToolError(
                    f"unknown tool {name!r}; the tools are {', '.join(self._tools)}"
                )
            parsed = parse_arguments(arguments)
            problem = check_arguments(tool.parameters, parsed)
            if problem is not None:
                raise ToolError(f"bad arguments for {name}: {problem}")
            content, error = tool.run(parsed), False
        except ToolError as exc:
            content = error_text(str(exc))
        except Exception:  # a bug in a tool is the model's error text, not a 500
            log.exception("tool %s failed", name)
            content = error_text(f"the tool {name} failed unexpectedly")
        return Outcome(content, error, time.monotonic() - started)
