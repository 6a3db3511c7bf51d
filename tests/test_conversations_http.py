"""GET and DELETE /conversations/<id> through the real server, on every backend;
refusals and memory-off answers in-process on Flask's test client."""

import time
import uuid
from datetime import datetime

import pytest
import requests

from tests.support.fake_ollama import DEFAULT_TOKENS

REPLY = "".join(DEFAULT_TOKENS)


def chat(server, message, conversation_id):
    response = requests.post(
        server.url + "/chat",
        json={"message": message, "conversation_id": conversation_id},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response


@pytest.fixture
def memory_server(start_server, memory_env, ollama):
    return start_server(**memory_env)


def test_conversation_shows_its_messages_and_times(memory_server):
    cid = f"show-{uuid.uuid4()}"
    chat(memory_server, "first", cid)
    chat(memory_server, "second ✓", cid)
    response = requests.get(f"{memory_server.url}/conversations/{cid}", timeout=5)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == [
        "conversation_id",
        "messages",
        "created_at",
        "updated_at",
        "expires_at",
    ]
    assert body["conversation_id"] == cid
    assert body["messages"] == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": REPLY},
        {"role": "user", "content": "second ✓"},
        {"role": "assistant", "content": REPLY},
    ]
    created, updated, expires = (
        datetime.fromisoformat(body[key])
        for key in ("created_at", "updated_at", "expires_at")
    )
    assert created <= updated
    assert (expires - updated).total_seconds() == pytest.approx(3600, abs=0.01)
    assert body["expires_at"].endswith("Z")


def test_unknown_conversation_is_a_404(memory_server):
    response = requests.get(f"{memory_server.url}/conversations/nobody-here", timeout=5)
    assert response.status_code == 404
    assert response.json() == {
        "detail": "conversation 'nobody-here' is unknown or has expired"
    }


def test_deleting_forgets_the_conversation_and_repeats_safely(memory_server, ollama):
    cid = f"forget-{uuid.uuid4()}"
    chat(memory_server, "remember this", cid)
    url = f"{memory_server.url}/conversations/{cid}"
    for _ in range(2):
        response = requests.delete(url, timeout=5)
        assert response.status_code == 204
        assert response.content == b""
    assert requests.get(url, timeout=5).status_code == 404
    chat(memory_server, "and now?", cid)
    assert [m["role"] for m in ollama.requests[-1]["messages"]] == ["system", "user"]


@pytest.mark.parametrize("bad_id", ["has%20space", "x" * 129, "semi;colon", "%C3%A9"])
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_invalid_conversation_id_is_a_422_like_chat(client, method, bad_id):
    response = client.open(f"/conversations/{bad_id}", method=method)
    assert response.status_code == 422
    assert response.get_json() == {
        "detail": [
            {
                "loc": ["path", "conversation_id"],
                "msg": "conversation_id must be 1-128 of A-Z a-z 0-9 . _ : -",
            }
        ]
    }


def test_other_methods_are_a_json_405(client):
    response = client.post("/conversations/x", json={})
    assert response.status_code == 405
    assert "detail" in response.get_json()
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "DELETE"}


def test_with_memory_off_nothing_is_found_and_forgetting_succeeds(make_app, ollama):
    client = make_app(enable_memory=False).test_client()
    sent = client.post("/chat", json={"message": "not kept", "conversation_id": "off"})
    assert sent.status_code == 200
    assert client.get("/conversations/off").status_code == 404
    assert client.delete("/conversations/off").status_code == 204


def test_an_idle_conversation_expires_and_is_then_a_404(
    start_server, memory_env, ollama
):
    # 0.02 minutes: 1.2 s idle and the conversation is gone, on every backend.
    server = start_server(MEMORY_TTL_MIN="0.02", **memory_env)
    cid = f"idle-{uuid.uuid4()}"
    chat(server, "soon forgotten", cid)
    url = f"{server.url}/conversations/{cid}"
    assert requests.get(url, timeout=5).status_code == 200
    time.sleep(2.5)
    assert requests.get(url, timeout=5).status_code == 404
    chat(server, "anyone there?", cid)
    assert [m["role"] for m in ollama.requests[-1]["messages"]] == ["system", "user"]
