"""GET /ready and the optional warm-up, against the fake Ollama."""

from __future__ import annotations

import socket
import time

import pytest
import requests
import responses

from piagent.errors import ModelMissing, ProviderUnreachable
from piagent.providers import OllamaProvider
from piagent.warmup import warm_up
from tests.support.fake_ollama import Behaviour
from tests.support.server import MODEL

HOST = "http://ollama.test:11434"


def unused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def get_ready(server):
    return requests.get(server.url + "/ready", timeout=10)


def test_ready_when_every_model_is_pulled_and_reports_warmth(server, ollama):
    response = get_ready(server)
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "models": {MODEL: {"pulled": True, "loaded": False}},
    }
    requests.post(server.url + "/chat", json={"message": "hi"}, timeout=10)
    assert get_ready(server).json()["models"][MODEL]["loaded"] is True


def test_not_ready_while_an_agents_model_is_not_pulled(start_server, ollama, tmp_path):
    (tmp_path / "coder.md").write_text("---\nmodel: coder:1b\n---\nWrite code.")
    server = start_server(AGENTS_DIR=str(tmp_path))
    response = get_ready(server)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert "run `ollama pull coder:1b`" in body["detail"]
    assert body["models"] == {
        "coder:1b": {"pulled": False, "loaded": False},
        MODEL: {"pulled": True, "loaded": False},
    }


def test_not_ready_without_ollama_is_a_503_naming_the_host(make_app):
    host = unused_url()
    client = make_app(ollama_host=host).test_client()
    response = client.get("/ready")
    assert response.status_code == 503
    assert f"Ollama unreachable at {host}" in response.get_json()["detail"]
    assert client.get("/health").status_code == 200


def test_ready_never_answers_500_even_when_the_check_itself_breaks(app, monkeypatch):
    provider = app.extensions["piagent"].provider

    def broken(models):
        raise RuntimeError("surprise")

    monkeypatch.setattr(provider, "readiness", broken)
    response = app.test_client().get("/ready")
    assert response.status_code == 503
    assert response.get_json()["detail"] == "readiness check failed: surprise"


def provider() -> OllamaProvider:
    return OllamaProvider(
        HOST, timeout=5, connect_timeout=1, keep_alive="5m", options={}
    )


@responses.activate
def test_readiness_matches_a_model_pulled_without_a_tag_as_latest():
    responses.get(HOST + "/api/tags", json={"models": [{"name": "llama3:latest"}]})
    responses.get(HOST + "/api/ps", json={"models": []})
    result = provider().readiness(["llama3"])
    assert result.ready
    assert result.models["llama3"].pulled and not result.models["llama3"].loaded


@responses.activate
@pytest.mark.parametrize(
    ("tags", "needle"),
    [
        (
            {"status": 500, "json": {"error": "x"}},
            "answered GET /api/tags with HTTP 500",
        ),
        ({"body": "not json"}, "unexpected model list on GET /api/tags"),
        ({"json": {"models": "nope"}}, "unexpected model list"),
    ],
)
def test_readiness_reports_a_broken_model_list_as_the_problem(tags, needle):
    responses.get(HOST + "/api/tags", **tags)
    responses.get(HOST + "/api/ps", json={"models": []})
    result = provider().readiness([MODEL])
    assert not result.ready
    assert needle in result.problem
    assert result.models == {}


@responses.activate
def test_warm_loads_with_a_generate_request_without_a_prompt():
    responses.post(HOST + "/api/generate", json={"done": True})
    provider().warm(MODEL)
    body = responses.calls[0].request.body
    assert b'"model": "qwen2.5:3b-instruct"' in body and b"prompt" not in body


@responses.activate
def test_warm_of_a_missing_model_says_how_to_pull_it():
    responses.post(HOST + "/api/generate", status=404, json={"error": "not found"})
    with pytest.raises(ModelMissing, match="ollama pull qwen2.5:3b-instruct"):
        provider().warm(MODEL)


def test_warm_up_logs_a_failure_and_never_raises(caplog):
    class Down:
        def warm(self, model):
            raise ProviderUnreachable("Ollama unreachable at x")

    with caplog.at_level("INFO", logger="piagent"):
        assert warm_up(Down(), MODEL) is False
    assert "warm-up of model 'qwen2.5:3b-instruct' failed" in caplog.text


def test_warmup_loads_the_default_model_at_start(launch, ollama):
    server = launch({"OLLAMA_HOST": ollama.url, "WARMUP": "true"}).wait_ready()
    server.wait_for_log(f"warm-up: model '{MODEL}' loaded in")
    [load] = [r for r in ollama.requests if "messages" not in r]
    assert load["model"] == MODEL and not load.get("prompt")
    assert get_ready(server).json()["models"][MODEL]["loaded"] is True


def test_warmup_never_delays_start_up(launch, ollama):
    ollama.behaviour = Behaviour(first_delay=3.0)
    started = time.monotonic()
    server = launch({"OLLAMA_HOST": ollama.url, "WARMUP": "true"}).wait_ready()
    server.wait_for_log("warm-up: loading model")
    assert requests.get(server.url + "/health", timeout=5).status_code == 200
    assert get_ready(server).json()["models"][MODEL]["loaded"] is False
    assert time.monotonic() - started < 3.0
    server.wait_for_log(f"warm-up: model '{MODEL}' loaded in", timeout=10)


def test_warmup_of_a_missing_model_is_logged_and_piagent_serves(launch, ollama):
    ollama.behaviour = Behaviour(models=("other:1b",))
    server = launch({"OLLAMA_HOST": ollama.url, "WARMUP": "true"}).wait_ready()
    server.wait_for_log(f"warm-up of model '{MODEL}' failed")
    assert requests.get(server.url + "/health", timeout=5).status_code == 200
