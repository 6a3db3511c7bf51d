"""The HTTP contract: endpoints and replies through the real gunicorn server;
refusals and error shapes in-process on Flask's test client (`client`)."""

import json
import uuid

import pytest
import requests

from tests.support.fake_ollama import DEFAULT_TOKENS, Behaviour
from tests.support.server import MODEL

REPLY = "".join(DEFAULT_TOKENS)


def post_chat(server, body, **kwargs):
    return requests.post(server.url + "/chat", json=body, timeout=10, **kwargs)


def test_health_is_ok_without_asking_ollama(server, ollama):
    response = requests.get(server.url + "/health", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert ollama.requests == []


def test_agents_lists_the_built_in_general(server):
    assert requests.get(server.url + "/agents", timeout=5).json() == {
        "agents": ["general"]
    }


def test_agents_dir_adds_agents_with_their_own_prompt_and_model(
    start_server, ollama, tmp_path
):
    (tmp_path / "pirate.md").write_text("---\nmodel: tiny:1b\n---\nTalk like a pirate.")
    ollama.behaviour = Behaviour(models=(MODEL, "tiny:1b"))
    server = start_server(AGENTS_DIR=str(tmp_path))
    agents = requests.get(server.url + "/agents", timeout=5).json()["agents"]
    assert agents == ["general", "pirate"]
    response = post_chat(server, {"message": "ahoy", "agent": "pirate"})
    assert response.status_code == 200
    assert response.json()["model"] == "tiny:1b"
    sent = ollama.requests[-1]
    assert sent["model"] == "tiny:1b"
    assert sent["messages"][0] == {"role": "system", "content": "Talk like a pirate."}


def test_non_stream_reply_has_the_predecessors_fields(server, ollama):
    response = post_chat(server, {"message": "hello", "junk": [1, 2]})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["reply"] == REPLY
    assert body["model"] == MODEL and body["provider"] == "ollama"
    assert uuid.UUID(body["conversation_id"]).version == 4
    assert response.headers["X-Conversation-Id"] == body["conversation_id"]


def test_non_stream_reply_is_utf8_byte_exact(server):
    response = post_chat(server, {"message": "hello"})
    assert json.loads(response.content.decode("utf-8"))["reply"] == REPLY
    assert REPLY.encode("utf-8") in response.content


def test_request_to_ollama_uses_role_messages_and_options(server, ollama):
    post_chat(server, {"message": "hello"})
    sent = ollama.requests[-1]
    assert sent["model"] == MODEL and sent["stream"] is True
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert sent["messages"][-1]["content"] == "hello"
    assert sent["options"] == {"temperature": 0.7, "num_ctx": 2048, "num_predict": 200}
    assert sent["keep_alive"] == "5m"


def test_client_conversation_id_is_kept(server):
    response = post_chat(server, {"message": "hi", "conversation_id": "kitchen:1"})
    assert response.json()["conversation_id"] == "kitchen:1"
    assert response.headers["X-Conversation-Id"] == "kitchen:1"


@pytest.mark.parametrize(
    "body",
    [
        {"message": "hi", "agent": "nobody", "conversation_id": "kitchen:1"},
        {"message": "   ", "conversation_id": "kitchen:1"},
        {"message": "hi", "stream": "yes", "conversation_id": "kitchen:1"},
    ],
    ids=["unknown-agent", "empty-message", "wrong-type"],
)
def test_a_rejected_turn_still_names_its_conversation(client, body):
    response = client.post("/chat", json=body)
    assert response.status_code == 422
    assert response.headers["X-Conversation-Id"] == "kitchen:1"


def test_an_invalid_conversation_id_is_never_echoed(server, ollama):
    # Through gunicorn: what matters is what reaches the wire.
    response = post_chat(server, {"message": "hi", "conversation_id": "a\r\nX: y"})
    assert response.status_code == 422
    assert "X-Conversation-Id" not in response.headers
    assert "X" not in response.headers  # no header smuggled in by CR/LF


def test_connections_to_ollama_are_pooled(server, ollama):
    for _ in range(5):
        assert post_chat(server, {"message": "hi"}).status_code == 200
    assert ollama.connections <= 1


def error_of(response):
    """The `detail` of a JSON error from Flask's test client."""
    assert response.mimetype == "application/json"
    assert "Traceback" not in response.text
    body = response.get_json()
    assert set(body) == {"detail"}
    return body["detail"]


@pytest.mark.parametrize(
    ("data", "content_type", "status", "needle"),
    [
        (b"[1, 2]", "application/json", 400, "JSON object"),
        (b'"text"', "application/json", 400, "JSON object"),
        (b"{bad json", "application/json", 400, "not valid JSON"),
        (b"\xff\xfe\x00", "application/json", 400, "not valid JSON"),
        (b"[" * 100_00 + b"]" * 100_00, "application/json", 400, "not valid JSON"),
        (b'{"message": "hi"}', "text/plain", 415, "application/json"),
        (b'{"message": "hi"}', None, 415, "application/json"),
    ],
)
def test_bad_bodies_get_a_clear_4xx(client, ollama, data, content_type, status, needle):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/chat", data=data, headers=headers)
    assert response.status_code == status
    assert needle in error_of(response)
    assert ollama.requests == []


def test_body_over_the_limit_is_413(client, ollama):
    body = json.dumps({"message": "x" * 70_000}).encode()
    response = client.post("/chat", data=body, content_type="application/json")
    assert response.status_code == 413
    assert "65536" in error_of(response)
    assert ollama.requests == []


def test_chunked_body_over_the_limit_is_413_not_truncated(server, ollama):
    # Through gunicorn: only a real server reads a chunked body.
    body = json.dumps({"message": "x" * 70_000}).encode()
    chunks = (body[i : i + 8192] for i in range(0, len(body), 8192))
    response = requests.post(
        server.url + "/chat",
        data=chunks,
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 413
    assert ollama.requests == []


def test_chunked_body_under_the_limit_is_accepted(server):
    # Through gunicorn: only a real server reads a chunked body.
    body = json.dumps({"message": "hi"}).encode()
    response = requests.post(
        server.url + "/chat",
        data=iter([body[:5], body[5:]]),
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"message": ""}, "message"),
        ({"message": "   "}, "message"),
        ({"message": "x" * 4001}, "message"),
        ({"message": 42}, "message"),
        ({"agent": "general"}, "message"),
        ({"message": "hi", "stream": "true"}, "stream"),
        ({"message": "hi", "agent": "../etc/passwd"}, "agent"),
        ({"message": "hi", "conversation_id": "a\r\nX-Evil: 1"}, "conversation_id"),
        ({"message": "hi", "conversation_id": "x" * 129}, "conversation_id"),
    ],
)
def test_invalid_fields_are_422_with_locations(client, ollama, body, field):
    response = client.post("/chat", json=body)
    assert response.status_code == 422
    detail = error_of(response)
    assert any(item["loc"] == ["body", field] for item in detail)
    assert "X-Evil" not in response.headers
    assert ollama.requests == []


def test_unknown_agent_is_422_naming_the_known_ones(client, ollama):
    response = client.post("/chat", json={"message": "hi", "agent": "wizard"})
    assert response.status_code == 422
    [item] = error_of(response)
    assert item["loc"] == ["body", "agent"]
    assert "'wizard'" in item["msg"] and "general" in item["msg"]
    assert ollama.requests == []


def test_unknown_path_and_wrong_method_answer_json(client):
    missing = client.get("/nope")
    assert missing.status_code == 404 and error_of(missing)
    wrong = client.get("/chat")
    assert wrong.status_code == 405 and error_of(wrong)
    assert "POST" in wrong.headers["Allow"]
