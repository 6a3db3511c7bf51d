"""Through Debian's real nginx with the shipped site file, in front of gunicorn.

The site file is used as shipped with only its ports substituted. Where a test
needs a first token slower than nginx's default read timeout (60 s), both
sides are scaled down by the same factor (SCALE): piagent's OLLAMA_TIMEOUT
300 s -> 3 s, the site's proxy_read_timeout/proxy_send_timeout 960 s -> 9.6 s,
and nginx's default 60 s -> 0.6 s, keeping every ratio.
"""

from __future__ import annotations

import json
import os
import uuid

import openai
import pytest
import requests
from requests.adapters import HTTPAdapter

from piagent.settings import Settings
from tests.support.fake_ollama import DEFAULT_TOKENS, Behaviour
from tests.support.logs import request_line
from tests.support.nginx import NGINX, shipped_read_timeout, start_nginx
from tests.test_streaming import arrival_gaps

# CI installs nginx (.ci/run), so there a missing nginx fails instead.
pytestmark = pytest.mark.skipif(
    NGINX is None and not os.environ.get("CI"),
    reason="nginx is not installed (apt-get install nginx; CI does)",
)

SCALE = 0.01
OLLAMA_TIMEOUT = 300 * SCALE
NGINX_DEFAULT_READ_TIMEOUT = 60 * SCALE
CLIENT_ADDRESS = "127.0.0.2"


class SourceAddressAdapter(HTTPAdapter):
    """Connect from another loopback address, so the client differs from nginx."""

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (CLIENT_ADDRESS, 0)
        super().init_poolmanager(*args, **kwargs)


@pytest.fixture(scope="module")
def piagent(start_server):
    return start_server(OLLAMA_TIMEOUT=f"{OLLAMA_TIMEOUT:g}", LOG_FORMAT="json")


@pytest.fixture(scope="module")
def nginx(piagent, tmp_path_factory):
    proxy = start_nginx(
        tmp_path_factory.mktemp("nginx"), piagent.port, timeout_scale=SCALE
    )
    yield proxy
    proxy.stop()


@pytest.fixture
def client():
    with requests.Session() as session:
        session.mount("http://", SourceAddressAdapter())
        yield session


def chat(client, nginx, body, **kwargs):
    return client.post(nginx.url + "/chat", json=body, timeout=15, **kwargs)


def test_site_outlasts_the_longest_silence_piagent_allows():
    defaults = Settings()
    assert shipped_read_timeout() > defaults.model_timeout
    # A queued JSON reply is silent while it waits and while it is generated.
    assert shipped_read_timeout() > (
        defaults.max_queue_wait_seconds + defaults.max_generation_seconds
    )


def test_a_json_reply_longer_than_ollama_timeout_arrives_through_nginx(
    client, nginx, ollama
):
    # Each gap is within OLLAMA_TIMEOUT, the whole reply is longer than it: nginx
    # sees no byte until the end and must still wait.
    tokens = [f"t{i} " for i in range(8)]
    ollama.behaviour = Behaviour(tokens=tokens, delay=0.5)
    response = chat(client, nginx, {"message": "long"})
    assert response.status_code == 200
    assert response.json()["reply"] == "".join(tokens)


def test_tokens_spaced_upstream_arrive_spaced_through_nginx(client, nginx, ollama):
    tokens = [f"t{i} " for i in range(6)]
    ollama.behaviour = Behaviour(tokens=tokens, delay=0.1)
    response = chat(client, nginx, {"message": "count", "stream": True}, stream=True)
    assert response.status_code == 200
    chunks, gaps = arrival_gaps(response)
    assert chunks == tokens
    # Not buffered by nginx and delivered at the end: spaced like the model.
    assert min(gaps) > 0.05, gaps


def test_first_token_slower_than_nginx_default_timeout_still_arrives(
    client, nginx, ollama
):
    ollama.behaviour = Behaviour(first_delay=NGINX_DEFAULT_READ_TIMEOUT + 0.4)
    for stream in (True, False):
        response = chat(client, nginx, {"message": "slow", "stream": stream})
        assert response.status_code == 200
        text = response.text if stream else response.json()["reply"]
        assert text == "".join(DEFAULT_TOKENS)


def test_nginx_default_read_timeout_would_cut_that_first_token(
    client, piagent, ollama, tmp_path
):
    """The control: the same site with nginx's default read timeout fails."""
    scale = NGINX_DEFAULT_READ_TIMEOUT / shipped_read_timeout()
    proxy = start_nginx(tmp_path, piagent.port, timeout_scale=scale)
    try:
        ollama.behaviour = Behaviour(first_delay=NGINX_DEFAULT_READ_TIMEOUT + 0.4)
        response = chat(client, proxy, {"message": "slow"})
        assert response.status_code == 504
    finally:
        proxy.stop()


def test_conversation_id_and_request_id_pass_through(client, nginx, ollama):
    for stream in (True, False):
        rid = uuid.uuid4().hex
        response = chat(
            client,
            nginx,
            {"message": "hi", "stream": stream, "conversation_id": "kitchen"},
            headers={"X-Request-Id": rid},
        )
        assert response.status_code == 200
        assert response.headers["X-Conversation-Id"] == "kitchen"
        assert response.headers["X-Request-Id"] == rid


@pytest.mark.parametrize(
    ("fault", "status", "needle"),
    [
        ("status_500", 502, "llama runner"),
        ("status_503", 503, "busy"),
        ("hang", 504, "OLLAMA_TIMEOUT"),
    ],
)
def test_error_statuses_pass_through_as_json(
    client, nginx, ollama, fault, status, needle
):
    ollama.behaviour = Behaviour(fault=fault)
    response = chat(client, nginx, {"message": "hi", "stream": True})
    assert response.status_code == status
    assert needle in response.json()["detail"]
    assert response.headers["X-Conversation-Id"]
    if status == 503:
        assert response.headers["Retry-After"] == "5"


def test_invalid_request_is_piagents_422_through_nginx(client, nginx, ollama):
    response = chat(client, nginx, {"message": ""})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "message"]


def test_body_over_the_limit_is_a_json_413_from_nginx(client, nginx, ollama):
    response = client.post(
        nginx.url + "/chat",
        data=json.dumps({"message": "x" * 70_000}),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 413
    assert response.json() == {"detail": "request body is larger than 65536 bytes"}
    assert ollama.requests == []


def test_body_over_the_limit_under_v1_is_openais_400_from_nginx(client, nginx, ollama):
    response = client.post(
        nginx.url + "/v1/chat/completions",
        data=json.dumps({"model": "general", "messages": "x" * 70_000}),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == "request body is larger than 65536 bytes"
    assert error["type"] == "invalid_request_error"
    assert ollama.requests == []


def test_openai_client_streams_through_nginx(nginx, ollama):
    ollama.behaviour = Behaviour(tokens=[f"t{i} " for i in range(6)], delay=0.1)
    with openai.OpenAI(base_url=nginx.url + "/v1", api_key="x", max_retries=0) as api:
        stream = api.chat.completions.create(
            model="general", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "".join(f"t{i} " for i in range(6))


def test_logged_client_address_is_the_clients_not_nginxs(
    client, nginx, piagent, ollama
):
    rid = uuid.uuid4().hex
    # A client cannot forge its address: nginx appends the one it saw.
    response = chat(
        client,
        nginx,
        {"message": "hi", "stream": True},
        headers={"X-Request-Id": rid, "X-Forwarded-For": "203.0.113.9"},
    )
    assert response.status_code == 200
    record = request_line(piagent, rid)
    assert record["client"] == CLIENT_ADDRESS
    assert record["ended"] == "ok"
    assert record["reply_tokens"] == len(DEFAULT_TOKENS)


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(client, piagent, ollama):
    rid = uuid.uuid4().hex
    response = client.get(
        piagent.url + "/health",
        headers={"X-Request-Id": rid, "X-Forwarded-For": "203.0.113.9"},
        timeout=5,
    )
    assert response.status_code == 200
    assert request_line(piagent, rid)["client"] == CLIENT_ADDRESS


@pytest.fixture(scope="module")
def named(start_server, tmp_path_factory):
    """piagent answering to pi.local (and 127.0.0.1, which the test runner
    polls), behind the shipped site, as an installed Pi named pi would."""
    server = start_server(ALLOWED_HOSTS="pi.local,127.0.0.1", LOG_FORMAT="json")
    proxy = start_nginx(tmp_path_factory.mktemp("nginx-named"), server.port)
    yield proxy
    proxy.stop()


@pytest.mark.parametrize("host", ["pi.local", "pi.local:{port}", "127.0.0.1:{port}"])
def test_an_allowed_name_is_served_through_nginx(client, named, ollama, host):
    host = host.format(port=named.port)
    response = chat(client, named, {"message": "hi"}, headers={"Host": host})
    assert response.status_code == 200 and response.json()["reply"]


def test_a_name_not_allowed_is_piagents_400_through_nginx(client, named, ollama):
    for path, body in (("/health", None), ("/chat", {"message": "hi"})):
        response = client.request(
            "POST" if body else "GET",
            named.url + path,
            json=body,
            headers={"Host": "piagent.home.arpa"},
            timeout=10,
        )
        assert response.status_code == 400
        assert response.json() == {
            "detail": "Host 'piagent.home.arpa' is not in ALLOWED_HOSTS: piagent "
            "answers only to the host names and addresses listed there (add this one "
            "if it is yours)"
        }
    assert ollama.requests == []


@pytest.mark.parametrize(
    ("host", "origin"),
    [("pi.local", "http://pi.local"), ("127.0.0.1:{port}", "http://127.0.0.1:{port}")],
)
def test_the_chat_pages_own_origin_may_post_through_nginx(
    client, named, ollama, host, origin
):
    """nginx passes the Host as the browser sent it, port included, and the
    scheme in X-Forwarded-Proto: the page's Origin is piagent's own."""
    headers = {
        "Host": host.format(port=named.port),
        "Origin": origin.format(port=named.port),
    }
    response = chat(client, named, {"message": "hi"}, headers=headers)
    assert response.status_code == 200
    headers["Origin"] = "http://evil.attacker.example"
    assert chat(client, named, {"message": "hi"}, headers=headers).status_code == 403
