"""/ollama's refusals and failures: every one in Ollama's `{"error"}` shape with a
real status before the first line, an `{"error"}` line after it; the guards
(keys, limits, the Host check, the queue's deadline) as on /chat.

Refusals that need no gevent go to the app in-process (Flask's test client);
streams, limits and the deadline go through the real gunicorn.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.support.fake_ollama import Behaviour

HELLO = [{"role": "user", "content": "hello"}]
CHAT = "/ollama/api/chat"


def refused(answer, status: int) -> str:
    """The message of an Ollama-shaped error answer of `status`."""
    assert answer.status_code == status, answer.get_data(as_text=True)
    body = answer.get_json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    return body["error"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"messages": HELLO}, "model: Missing data"),
        ({"model": 7, "messages": HELLO}, "model: Not a valid string"),
        ({"model": "general", "messages": "hello"}, "messages: Not a valid list"),
        ({"model": "general", "messages": [{"content": "x"}]}, "role: Missing"),
        ({"model": "general", "messages": [{"role": "robot"}]}, "role must be"),
        ({"model": "general", "messages": HELLO, "stream": "yes"}, "stream:"),
        ({"model": "general", "messages": HELLO, "format": "xml"}, "format must"),
        ({"model": "general", "messages": HELLO, "think": "max"}, "think must"),
        ({"model": "general", "messages": HELLO, "keep_alive": "soon"}, "keep_alive"),
        ({"model": "general", "messages": HELLO, "options": []}, "options:"),
        (
            {"model": "general", "messages": HELLO, "options": {"num_ctx": "big"}},
            "options.num_ctx:",
        ),
        ({"model": "general", "messages": HELLO, "tools": [{}]}, "tools.0.function"),
        (
            {"model": "general", "messages": HELLO, "tools": [{"type": "code"}]},
            "tools.0.type: type must be function",
        ),
        (
            {"model": "general", "messages": [{"role": "user", "images": ["aGk="]}]},
            "images are not supported",
        ),
        (
            {
                "model": "general",
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"function": {"name": "f", "arguments": 1}}],
                    }
                ],
            },
            "arguments:",
        ),
    ],
)
def test_a_body_ollama_would_refuse_is_a_400_naming_the_field(client, body, needle):
    assert needle in refused(client.post(CHAT, json=body), 400)


def test_a_body_that_is_not_json_is_a_400(client):
    assert "not valid JSON" in refused(client.post(CHAT, data="{"), 400)
    assert "JSON object" in refused(client.post(CHAT, data="[]"), 400)


def test_json_is_read_whatever_the_content_type_as_ollama_does(client, ollama):
    body = json.dumps({"model": "general", "messages": HELLO, "stream": False})
    answer = client.post(CHAT, data=body, content_type="text/plain")
    assert answer.status_code == 200 and answer.get_json()["done"] is True


def test_no_messages_only_loads_as_ollama_answers(client, ollama):
    for body in ({"model": "general"}, {"model": "general:latest", "messages": []}):
        answer = client.post(CHAT, json=body)
        assert answer.status_code == 200
        item = answer.get_json()
        assert item["done"] is True and item["done_reason"] == "load"
        assert item["message"] == {"role": "assistant", "content": ""}
    assert not ollama.requests
    assert "not found" in refused(client.post(CHAT, json={"model": "x"}), 404)


def test_a_message_over_the_limit_is_a_400(make_app, ollama):
    client = make_app(max_message_chars=10).test_client()
    body = {"model": "general", "messages": [{"role": "user", "content": "x" * 11}]}
    assert "longer than 10" in refused(client.post(CHAT, json=body), 400)


def test_a_history_over_the_context_is_a_400(make_app, ollama):
    client = make_app(ctx_tokens=256, max_tokens=100).test_client()
    body = {"model": "general", "messages": [{"role": "user", "content": "x" * 900}]}
    assert "CTX_TOKENS=256" in refused(client.post(CHAT, json=body), 400)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/ollama/api/generate"),
        ("post", "/ollama/api/embed"),
        ("post", "/ollama/api/embeddings"),
        ("post", "/ollama/api/create"),
        ("post", "/ollama/api/copy"),
        ("delete", "/ollama/api/delete"),
        ("post", "/ollama/api/push"),
        ("post", "/ollama/api/blobs/sha256:abc"),
    ],
)
def test_management_routes_are_501(client, method, path):
    assert "piagent" in refused(getattr(client, method)(path, json={}), 501)


def test_unknown_paths_and_methods_keep_ollamas_shape(client):
    assert refused(client.get("/ollama/api/nothing"), 404) == "404 page not found"
    refused(client.get(CHAT), 405)
    assert "model is required" in refused(client.post("/ollama/api/show", json={}), 400)


def test_the_setting_turns_the_whole_prefix_off(make_app):
    client = make_app(ollama_api=False).test_client()
    for path in ("/ollama/", "/ollama/api/tags", "/ollama/api/version"):
        assert client.get(path).status_code == 404
    assert client.post(CHAT, json={"model": "general"}).status_code == 404


def test_a_host_not_allowed_is_refused_under_ollama_too(client):
    answer = client.get("/ollama/api/tags", headers={"Host": "evil.example"})
    assert "evil.example" in refused(answer, 400)


def test_ollama_down_before_the_first_line_is_a_502(make_app):
    client = make_app(ollama_host="http://127.0.0.1:9").test_client()
    body = {"model": "general", "messages": HELLO}
    assert "unreachable" in refused(client.post(CHAT, json=body), 502)
    # The metadata still answers, from piagent's own knowledge.
    [model] = client.get("/ollama/api/tags").get_json()["models"]
    assert model["name"] == "general:latest" and model["details"]["format"] == ""
    assert client.get("/ollama/api/ps").get_json() == {"models": []}
    # `name`, as older clients send it, names the model too.
    shown = client.post("/ollama/api/show", json={"name": "general"}).get_json()
    assert shown["system"] and shown["details"]["format"] == ""
    assert "completion" in shown["capabilities"]
    pulled = client.post("/ollama/api/pull", json={"name": "general", "stream": False})
    assert pulled.get_json() == {"status": "success"}
    assert "not found" in refused(
        client.post("/ollama/api/pull", json={"name": "nobody"}), 404
    )


def test_chat_counts_against_the_chat_limit_and_metadata_does_not(start_server):
    server = start_server(RATE_LIMIT_CHAT="1/minute", RATE_LIMIT_DEFAULT="")
    body = {"model": "general", "messages": HELLO, "stream": False}
    assert requests.post(server.url + CHAT, json=body, timeout=10).status_code == 200
    limited = requests.post(server.url + CHAT, json=body, timeout=10)
    assert limited.status_code == 429 and set(limited.json()) == {"error"}
    assert "rate limit exceeded" in limited.json()["error"]
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # /chat shares the budget; Home Assistant's polling does not touch it.
    assert (
        requests.post(
            server.url + "/chat", json={"message": "hi"}, timeout=10
        ).status_code
        == 429
    )
    for path in ("/ollama/api/tags", "/ollama/api/ps", "/ollama/api/version") * 5:
        assert requests.get(server.url + path, timeout=5).status_code == 200
    shown = requests.post(
        server.url + "/ollama/api/show", json={"model": "general"}, timeout=5
    )
    assert shown.status_code == 200


def test_the_deadline_ends_a_stream_with_an_error_line(start_server, ollama):
    server = start_server(MAX_GENERATION_SECONDS="1", OLLAMA_TIMEOUT="5")
    ollama.behaviour = Behaviour(tokens=[f"w{i} " for i in range(40)], delay=0.1)
    started = time.monotonic()
    answer = requests.post(
        server.url + CHAT, json={"model": "general", "messages": HELLO}, timeout=10
    )
    assert answer.status_code == 200 and time.monotonic() - started < 3.0
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert lines[0]["message"]["content"] == "w0 "
    assert (
        set(lines[-1]) == {"error"} and "MAX_GENERATION_SECONDS" in lines[-1]["error"]
    )
    assert not any(line.get("done") for line in lines)


def test_an_error_line_from_ollama_becomes_an_error_line(server, ollama):
    ollama.behaviour = Behaviour(fault="error_line")
    answer = requests.post(
        server.url + CHAT, json={"model": "general", "messages": HELLO}, timeout=10
    )
    last = json.loads(answer.text.splitlines()[-1])
    assert set(last) == {"error"} and "boom" in last["error"]


def test_an_error_before_the_first_line_keeps_its_status(server, ollama):
    ollama.behaviour = Behaviour(fault="status_503")
    answer = requests.post(
        server.url + CHAT, json={"model": "general", "messages": HELLO}, timeout=10
    )
    assert answer.status_code == 503 and set(answer.json()) == {"error"}


def test_the_document_describes_every_ollama_route_in_ollamas_shape(client):
    doc = client.get("/openapi.json").get_json()
    for path, method in [
        ("/ollama/", "get"),
        ("/ollama/api/version", "get"),
        ("/ollama/api/tags", "get"),
        ("/ollama/api/ps", "get"),
        ("/ollama/api/show", "post"),
        ("/ollama/api/chat", "post"),
        ("/ollama/api/pull", "post"),
        ("/ollama/api/generate", "post"),
        ("/ollama/api/delete", "delete"),
    ]:
        operation = doc["paths"][path][method]
        for status, answer in operation["responses"].items():
            if status.startswith(("4", "5")):
                schema = answer["content"]["application/json"]["schema"]["$ref"]
                assert schema.endswith("/OllamaError"), (path, status)
    chat = doc["paths"]["/ollama/api/chat"]["post"]["responses"]
    assert "422" not in chat and "application/x-ndjson" in chat["200"]["content"]
