"""An OpenAI-compatible server's /chat/completions, streamed as server-sent events.

llama.cpp's llama-server, LM Studio, vLLM, LocalAI and OpenAI itself speak it.
Each event is one `data: {...}` line carrying `choices[0].delta.content`; the
stream ends with `data: [DONE]`. An error after the first event arrives as
`data: {"error": {...}}` with the status already 200, so every line is checked.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import requests

from piagent.errors import ModelMissing, ProviderBusy, ProviderError, ProviderFailed
from piagent.providers.base import (
    ChatMessage,
    ModelState,
    Options,
    Readiness,
    Thought,
    ToolCall,
    ToolOffer,
    new_call_id,
)
from piagent.providers.counts import count, member, openai_usage
from piagent.providers.http import HttpProvider, LineStream

# Statuses that mean "try again shortly" rather than "broken".
BUSY_STATUSES = (429, 503)
# SSE fields other than data; `:` starts a comment.
SKIPPED_FIELDS = (b"event", b"id", b"retry")


class OpenAIProvider(HttpProvider):
    """Any server with OpenAI's /chat/completions; GET /models for readiness."""

    name = "openai"
    label = "OpenAI-compatible server"
    start_hint = (
        "is it running? Start llama-server or LM Studio's server, or check "
        "OPENAI_BASE_URL (it usually ends in /v1)."
    )

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str,
        timeout: float,
        connect_timeout: float,
        temperature: float,
        max_tokens: int,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        super().__init__(
            base_url, timeout=timeout, connect_timeout=connect_timeout, headers=headers
        )
        self._defaults = {"temperature": temperature, "max_tokens": max_tokens}
        self._chat_url = self.host + "/chat/completions"

    def stream(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        options: Options | None = None,
        tools: ToolOffer | None = None,
    ) -> OpenAIStream:
        payload: dict[str, Any] = {
            "model": model,
            "messages": list(messages),
            "stream": True,
            # Ask for the server's token counts in a last chunk before [DONE].
            "stream_options": {"include_usage": True},
            **self._defaults,
        }
        if options is not None:
            payload.update(openai_options(options))
        if tools is not None and tools.definitions:
            payload["tools"] = list(tools.definitions)
            if tools.choice is not None:
                payload["tool_choice"] = tools.choice
            if tools.parallel is not None:
                payload["parallel_tool_calls"] = tools.parallel
        return self._open_stream(self._chat_url, payload, OpenAIStream, model, options)

    def models(self) -> set[str]:
        """The ids GET /models lists (a short timeout: /ready and start-up use it)."""
        response = self._get("/models")
        with response:
            if response.status_code != 200:
                message, _ = self._error_body(response)
                raise ProviderFailed(
                    f"{self.label} at {self.host} answered GET /models with "
                    f"HTTP {response.status_code}: {message}"
                )
            try:
                listed = response.json().get("data") or []
                return {
                    item["id"] for item in listed if isinstance(item.get("id"), str)
                }
            except (ValueError, AttributeError, TypeError, KeyError) as exc:
                raise ProviderFailed(
                    f"{self.label} at {self.host} sent an unexpected model list on "
                    f"GET /models: {exc}"
                ) from None

    def readiness(self, models: Sequence[str]) -> Readiness:
        """Ready when GET /models answers and lists every agent's model.

        The API cannot tell downloaded from loaded, so both mean "listed".
        """
        try:
            listed = self.models()
        except ProviderError as exc:
            return Readiness({}, problem=exc.detail)
        states = {
            m: ModelState(pulled=m in listed, loaded=m in listed)
            for m in sorted(set(models))
        }
        problem = "; ".join(
            self._not_listed(m, listed) for m, s in states.items() if not s.pulled
        )
        return Readiness(states, problem=problem or None)

    def _missing(self, models: list[str]) -> list[str]:
        listed = self.models()
        return [self._not_listed(m, listed) for m in models if m not in listed]

    def warm(self, model: str) -> None:
        """The API has no "load" call: ask for one token, which loads the model."""
        stream = self.stream(
            model, [{"role": "user", "content": "hi"}], Options(max_tokens=1)
        )
        try:
            for _ in stream:
                pass
        finally:
            stream.close()

    def _not_listed(self, model: str, listed: set[str]) -> str:
        known = ", ".join(sorted(listed)) or "none"
        return (
            f"model {model!r} is not listed by {self.label} at {self.host} "
            f"(it lists: {known}); set OPENAI_MODEL_GENERAL or the agent's model "
            "to one of those"
        )

    def _status_error(self, response: requests.Response, model: str) -> ProviderError:
        message, code = self._error_body(response)
        status = response.status_code
        where = f"{self.label} at {self.host}"
        if status == 404 or code == "model_not_found":
            return ModelMissing(
                f"model {model!r} is not available at {where} ({message}); check "
                f"the model name against GET {self.host}/models, and that "
                "OPENAI_BASE_URL ends in /v1"
            )
        if status in BUSY_STATUSES:
            return ProviderBusy(f"{where} is busy (HTTP {status}): {message}")
        if status in (401, 403):
            return ProviderFailed(
                f"{where} refused piagent (HTTP {status}: {message}); check "
                "OPENAI_API_KEY",
                upstream_status=status,
            )
        return ProviderFailed(
            f"{where} failed (HTTP {status}): {message}", upstream_status=status
        )


class OpenAIStream(LineStream):
    """One streamed /chat/completions, yielding each chunk's delta content.

    Every event is taken to be a single `data:` line, as all these servers send
    them; comments (`: ping`) and `event:`/`id:`/`retry:` fields are skipped.
    """

    unfinished = "ended the reply without `data: [DONE]`"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._finish_reason: str | None = None
        self._usage: Any = None
        self._timings: Any = None
        self._calls = CallAssembler()

    def _parse(self, line: bytes) -> tuple[str, bool]:
        line = line.rstrip(b"\r")
        if line.startswith(b":") or line.split(b":", 1)[0] in SKIPPED_FIELDS:
            return "", False
        if not line.startswith(b"data:"):
            raise self._malformed(line)
        data = line[5:].removeprefix(b" ")
        if data.strip() == b"[DONE]":
            self.tool_calls = self._calls.calls()
            reply = count(member(self._usage, "completion_tokens"))
            self.usage = openai_usage(
                self._usage, self._timings, reply, self._finish_reason
            )
            return "", True
        try:
            item = json.loads(data.decode("utf-8"))
        except ValueError:
            item = None
        if not isinstance(item, dict):
            raise self._malformed(line)
        if item.get("error"):
            error = item["error"]
            message = error.get("message") if isinstance(error, dict) else None
            raise self._failure(f"{self._provider.label} error: {message or error}")
        if isinstance(item.get("usage"), dict):
            self._usage = item["usage"]
        if isinstance(item.get("timings"), dict):  # llama-server's own counts
            self._timings = item["timings"]
        choices = item.get("choices")
        if not isinstance(choices, list):
            raise self._malformed(line)
        if not choices:  # the usage chunk
            return "", False
        choice = choices[0]
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            raise self._malformed(line)
        content = delta.get("content") or ""
        if not isinstance(content, str):
            raise self._malformed(line)
        if self.stream_thinking:
            reasoning = delta.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                content, self._after = Thought(reasoning), content
        if delta.get("tool_calls") and not self._calls.add(delta["tool_calls"]):
            raise self._malformed(line)
        if isinstance(choice.get("finish_reason"), str):
            self._finish_reason = choice["finish_reason"]
        return content, False

    def _malformed(self, line: bytes) -> ProviderError:
        return self._failure(
            f"malformed line from {self._provider.label} ({len(line)} bytes, "
            "not a chat chunk)"
        )


def openai_options(options: Options) -> dict[str, Any]:
    """The request fields of a client's options that OpenAI's API has.

    `format` becomes `response_format`: "json" is `json_object`, a schema is
    `json_schema` (strict, named "reply"). Ollama's `think`, `num_ctx`,
    `keep_alive` and `top_k` have no counterpart there and are not sent.
    """
    fields: dict[str, Any] = {}
    for name, value in (
        ("temperature", options.temperature),
        ("max_tokens", options.max_tokens),
        ("top_p", options.top_p),
        ("seed", options.seed),
    ):
        if value is not None:
            fields[name] = value
    if options.stop is not None:
        fields["stop"] = list(options.stop)
    if options.format == "json":
        fields["response_format"] = {"type": "json_object"}
    elif isinstance(options.format, dict):
        fields["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": options.format, "strict": True},
        }
    return fields


class CallAssembler:
    """Tool calls put together from streamed deltas.

    The first delta of a call carries its `index`, `id` and `function.name`;
    later ones add pieces of `function.arguments` under the same index. Some
    servers leave out the index (one call at a time), and Ollama's
    compatibility layer gives every call of a batch index 0 with its own id:
    a new id at an index that has one starts a new call.
    """

    def __init__(self) -> None:
        # Per call, in order: [id, name pieces, argument pieces].
        self._calls: list[list[Any]] = []
        self._at: dict[int, int] = {}  # a delta's index -> its call

    def add(self, deltas: Any) -> bool:
        """Take one chunk's `delta.tool_calls`; False if they are malformed."""
        if not isinstance(deltas, list):
            return False
        for delta in deltas:
            if not isinstance(delta, dict):
                return False
            function = delta.get("function") or {}
            if not isinstance(function, dict):
                return False
            index, call_id = delta.get("index", 0), delta.get("id")
            name, arguments = function.get("name"), function.get("arguments")
            if not isinstance(index, int) or not all(
                isinstance(v, str | None) for v in (call_id, name, arguments)
            ):
                return False
            at = self._at.get(index)
            if at is None or (call_id and self._calls[at][0] not in (None, call_id)):
                at = self._at[index] = len(self._calls)
                self._calls.append([None, [], []])
            call = self._calls[at]
            call[0] = call[0] or call_id
            if name and not call[1]:  # the name comes whole, once
                call[1].append(name)
            if arguments:
                call[2].append(arguments)
        return True

    def calls(self) -> list[ToolCall]:
        return [
            ToolCall(call_id or new_call_id(), "".join(name), "".join(arguments))
            for call_id, name, arguments in self._calls
        ]
