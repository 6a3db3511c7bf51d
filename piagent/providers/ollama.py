"""Ollama's /api/chat over one pooled requests.Session, read as NDJSON."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

import requests

from piagent.errors import (
    ModelMissing,
    ProviderBusy,
    ProviderError,
    ProviderFailed,
)
from piagent.providers.base import (
    ChatMessage,
    ModelState,
    Options,
    Readiness,
    Thought,
    ToolCall,
    ToolOffer,
    Usage,
    arguments_text,
    new_call_id,
)
from piagent.providers.counts import count
from piagent.providers.http import READY_TIMEOUT, HttpProvider, LineStream

log = logging.getLogger("piagent")

# A token line exactly as Ollama writes it, up to the content's opening quote;
# after the content nothing but the end may follow. Any other line (an error,
# a final line, a thinking model's extra fields, other key orders) is decoded
# whole. json's own string scanner reads the content, so a line of this shape
# gives the text a full decode would, in half the time.
_TOKEN_HEAD = re.compile(
    r'\{"model":"[^"\\\x00-\x1f]*","created_at":"[^"\\\x00-\x1f]*",'
    r'"message":\{"role":"assistant","content":"'
)
# json's own string scanner (C when available): typeshed leaves it out of
# json.decoder, so its signature is declared here.
scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]  # not in typeshed
_TOKEN_TAIL = '},"done":false}'
_JSON_SPACE = " \t\n\r"


def keep_alive_value(setting: str) -> int | str:
    """Ollama reads a bare number as seconds but a string only as a Go duration."""
    return int(setting) if setting.lstrip("-").isdigit() else setting


class OllamaProvider(HttpProvider):
    """Ollama's /api/chat, always streamed; /api/tags and /api/ps for
    readiness, /api/generate without a prompt to load a model."""

    name = "ollama"
    label = "Ollama"
    start_hint = (
        "is it running? Start it with `ollama serve` or `systemctl start ollama`."
    )

    def __init__(
        self,
        host: str,
        *,
        timeout: float,
        connect_timeout: float,
        keep_alive: str,
        options: dict[str, Any],
    ) -> None:
        super().__init__(host, timeout=timeout, connect_timeout=connect_timeout)
        self._options = dict(options)
        self._payload = {
            "stream": True,
            "options": self._options,
            "keep_alive": keep_alive_value(keep_alive),
        }
        self._chat_url = self.host + "/api/chat"

    def stream(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        options: Options | None = None,
        tools: ToolOffer | None = None,
    ) -> OllamaStream:
        payload = {
            "model": model,
            "messages": ollama_messages(messages),
            **self._payload,
        }
        if options is not None:
            payload["options"] = self._merged(options)
            if options.keep_alive is not None:
                payload["keep_alive"] = options.keep_alive
            if options.format is not None:
                payload["format"] = options.format
            if options.think is not None:
                payload["think"] = options.think
        # Ollama has no tool_choice: "none" is honoured by offering no tools,
        # anything else leaves the choice to the model.
        if tools is not None and tools.definitions and tools.choice != "none":
            payload["tools"] = list(tools.definitions)
        return self._open_stream(self._chat_url, payload, OllamaStream, model, options)

    def _merged(self, options: Options) -> dict[str, Any]:
        merged = dict(self._options)
        for name, value in (
            ("temperature", options.temperature),
            ("num_predict", options.max_tokens),
            ("num_ctx", options.num_ctx),
            ("top_p", options.top_p),
            ("top_k", options.top_k),
            ("seed", options.seed),
        ):
            if value is not None:
                merged[name] = value
        if options.stop is not None:
            merged["stop"] = list(options.stop)
        return merged

    def catalog(self, what: str, model: str | None = None) -> Any:
        """/api/tags or /api/ps by model name, or /api/show of `model`."""
        if what == "show":
            with self.translate_errors():
                response = self._session.post(
                    self.host + "/api/show",
                    data=json.dumps({"model": model}).encode(),
                    headers={"Content-Type": "application/json"},
                    timeout=(self._timeouts[0], READY_TIMEOUT),
                )
            with response:
                if response.status_code != 200:
                    raise self._status_error(response, model or "")
                return _json_object(response, "/api/show", self.host)
        response = self._get(f"/api/{what}")
        with response:
            if response.status_code != 200:
                raise self._status_error(response, model or "")
            listed = _json_object(response, f"/api/{what}", self.host).get("models")
        return {
            item["name"]: item
            for item in listed or []
            if isinstance(item, dict) and isinstance(item.get("name"), str)
        }

    def readiness(self, models: Sequence[str]) -> Readiness:
        wanted = sorted(set(models))
        try:
            pulled = self._model_names("/api/tags")
            loaded = self._model_names("/api/ps")
        except ProviderError as exc:
            return Readiness({}, problem=exc.detail)
        states = {
            m: ModelState(pulled=_listed(m, pulled), loaded=_listed(m, loaded))
            for m in wanted
        }
        problem = "; ".join(
            self._not_pulled(m) for m, state in states.items() if not state.pulled
        )
        return Readiness(states, problem=problem or None)

    def warm(self, model: str) -> None:
        """POST /api/generate with a model and no prompt: Ollama's way to load."""
        body = {"model": model, "keep_alive": self._payload["keep_alive"]}
        with self.translate_errors():
            response = self._session.post(
                self.host + "/api/generate",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
                timeout=self._timeouts,
            )
            if response.status_code != 200:
                raise self._status_error(response, model)
            response.close()

    def models(self) -> set[str]:
        """The names GET /api/tags lists (pulled models), with a short timeout."""
        return self._model_names("/api/tags")

    def _model_names(self, path: str) -> set[str]:
        """Names in /api/tags (pulled) or /api/ps (loaded), with a short timeout."""
        response = self._get(path)
        with response:
            if response.status_code != 200:
                raise ProviderFailed(
                    f"Ollama at {self.host} answered GET {path} with "
                    f"HTTP {response.status_code}"
                )
            try:
                listed = response.json().get("models") or []
                return {
                    name
                    for item in listed
                    for name in (item.get("name"), item.get("model"))
                    if isinstance(name, str)
                }
            except (ValueError, AttributeError, TypeError) as exc:
                raise ProviderFailed(
                    f"Ollama at {self.host} sent an unexpected model list on "
                    f"GET {path}: {exc}"
                ) from None

    def _missing(self, models: list[str]) -> list[str]:
        pulled = self._model_names("/api/tags")
        return [self._not_pulled(m) for m in models if not _listed(m, pulled)]

    def _not_pulled(self, model: str) -> str:
        return (
            f"model {model!r} is not pulled in Ollama at {self.host}: "
            f"run `ollama pull {model}`"
        )

    def _status_error(self, response: requests.Response, model: str) -> ProviderError:
        message, _ = self._error_body(response)
        if response.status_code == 404:
            return ModelMissing(
                f"model {model!r} is not available in Ollama at {self.host} "
                f"({message}); run `ollama pull {model}`"
            )
        if response.status_code == 503:
            return ProviderBusy(f"Ollama is busy: {message}")
        return ProviderFailed(
            f"Ollama failed (HTTP {response.status_code}): {message}",
            upstream_status=response.status_code,
        )


class OllamaStream(LineStream):
    """One /api/chat response, yielding `message.content` of each NDJSON line."""

    unfinished = "ended the reply without its final line"

    def _parse(self, line: bytes) -> tuple[str, bool]:
        try:
            text = line.decode("utf-8")
        except ValueError:
            raise self._failure(_malformed(line)) from None
        content = token_content(text)
        if content is not None:
            return content, False
        try:
            item = json.loads(text)
        except ValueError:
            item = None
        if not isinstance(item, dict):
            raise self._failure(_malformed(line))
        if "error" in item:
            raise self._failure(f"Ollama error: {item['error']}")
        message = item.get("message")
        content = message.get("content", "") if isinstance(message, dict) else ""
        if not isinstance(content, str):
            raise self._failure(_malformed(line))
        if self.stream_thinking and isinstance(message, dict):
            thinking = message.get("thinking")
            if isinstance(thinking, str) and thinking:
                # Thinking comes first; text of the same line after it.
                content, self._after = Thought(thinking), content
        if isinstance(message, dict) and message.get("tool_calls"):
            calls = tool_calls(message["tool_calls"])
            if calls is None:
                raise self._failure(_malformed(line))
            self.tool_calls.extend(calls)
        if item.get("done") is True:
            # Ollama counts the whole prompt in prompt_eval_count, and since
            # 0.30 says how much of it came from its cache.
            self.usage = Usage(
                prompt_tokens=item.get("prompt_eval_count"),
                reply_tokens=item.get("eval_count"),
                done_reason=item.get("done_reason"),
                cached_prompt_tokens=count(item.get("prompt_eval_cached_count")),
                durations=(
                    count(item.get("total_duration")),
                    count(item.get("load_duration")),
                    count(item.get("prompt_eval_duration")),
                    count(item.get("eval_duration")),
                ),
            )
            return content, True
        return content, False


def ollama_messages(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """OpenAI-format messages as Ollama reads them; plain ones pass as they are.

    An assistant's calls get their arguments as an object and keep nothing
    else (Ollama's documented shape); a tool result names its tool in
    `tool_name`, found by its `tool_call_id` among the calls before it. The
    same messages always give the same bytes, so the prompt stays cacheable.
    """
    if all(len(m) == 2 for m in messages):  # role and content: nothing to convert
        return list(messages)
    names: dict[str, str] = {}
    converted = []
    for message in messages:
        calls = message.get("tool_calls")
        if calls:
            wire = []
            for call in calls:
                function = call["function"]
                names[call.get("id", "")] = function["name"]
                wire.append(
                    {
                        "function": {
                            "name": function["name"],
                            "arguments": arguments_object(function["arguments"]),
                        }
                    }
                )
            converted.append(
                {
                    "role": "assistant",
                    "content": message.get("content") or "",
                    "tool_calls": wire,
                }
            )
        elif message.get("role") == "tool":
            result = {"role": "tool", "content": message.get("content") or ""}
            name = names.get(message.get("tool_call_id") or "")
            if name is not None:
                result["tool_name"] = name
            converted.append(result)
        else:
            converted.append({"role": message["role"], "content": message["content"]})
    return converted


def arguments_object(arguments: Any) -> dict[str, Any]:
    """Arguments as Ollama takes them, an object; text that is not a JSON
    object (a model's mistake, kept in memory) is sent as an empty one."""
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = json.loads(arguments)
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def tool_calls(raw: Any) -> list[ToolCall] | None:
    """The calls of a line's `message.tool_calls`, or None if malformed.

    Arguments come as an object; they are kept as compact JSON text in the
    model's key order, which renders the same object when sent back.
    """
    if not isinstance(raw, list):
        return None
    calls = []
    for item in raw:
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            return None
        arguments = function.get("arguments", {})
        if not isinstance(arguments, str):
            arguments = arguments_text(arguments)
        call_id = item.get("id")
        if not (isinstance(call_id, str) and call_id):
            call_id = new_call_id()
        calls.append(ToolCall(call_id, function["name"], arguments))
    return calls


def token_content(line: str) -> str | None:
    """The content of a token line in Ollama's exact shape; None for any other
    line, which then needs a full decode."""
    head = _TOKEN_HEAD.match(line)
    if head is None:
        return None
    try:
        content, end = scanstring(line, head.end())
    except ValueError:
        return None
    if line[end:].rstrip(_JSON_SPACE) != _TOKEN_TAIL:
        return None
    return content


def _json_object(response: requests.Response, path: str, host: str) -> dict[str, Any]:
    try:
        item = response.json()
    except ValueError:
        item = None
    if not isinstance(item, dict):
        raise ProviderFailed(f"Ollama at {host} sent an unexpected answer on {path}")
    return item


def _listed(model: str, names: set[str]) -> bool:
    """Ollama lists a model pulled without a tag as `<name>:latest`."""
    return model in names or f"{model}:latest" in names


def _malformed(line: bytes) -> str:
    """Says what was wrong without quoting it: the line may hold model text,
    which stays out of logs unless LOG_CONTENT=true."""
    return f"malformed line from Ollama ({len(line)} bytes, not a chat chunk)"
