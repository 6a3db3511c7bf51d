"""The Origin check: a POST or DELETE from another site's page is a 403 and
reaches nothing; the server's own origin, CORS_ORIGINS and clients without an
Origin (curl, scripts) pass."""

from __future__ import annotations

import pytest
import requests

from piagent.web.guards.origin import parse_origin

PAGE = "http://192.168.1.20:8080"
FOREIGN = "http://evil.attacker.example"


@pytest.mark.parametrize(
    ("text", "origin"),
    [
        ("http://pi.local", ("http", "pi.local", 80)),
        ("http://PI.local:80", ("http", "pi.local", 80)),
        ("https://pi.local", ("https", "pi.local", 443)),
        ("http://[::1]:8000", ("http", "::1", 8000)),
        ("null", None),
        ("file://", None),
        ("http://pi.local/app", None),
        ("http://user@pi.local", None),
        ("http://pi.local:99999", None),
        ("", None),
    ],
)
def test_origins_are_compared_as_scheme_host_and_port(text, origin):
    assert parse_origin(text) == origin


@pytest.fixture
def server(start_server, ollama):
    return start_server(CORS_ORIGINS=PAGE)


def own_origin(server):
    return f"http://127.0.0.1:{server.port}"


def post_chat(server, origin, **headers):
    headers["Origin"] = origin
    return requests.post(
        server.url + "/chat",
        json={"message": "hi", "conversation_id": "kitchen-o"},
        headers=headers,
        timeout=10,
    )


@pytest.mark.parametrize("origin", [FOREIGN, "null", "https://127.0.0.1", "junk"])
def test_a_foreign_origin_may_not_post_and_reaches_nothing(server, ollama, origin):
    response = post_chat(server, origin)
    assert response.status_code == 403
    assert set(response.json()) == {"detail"}
    assert (
        "neither this server's own origin nor in CORS_ORIGINS"
        in (response.json()["detail"])
    )
    assert "Access-Control-Allow-Origin" not in response.headers
    assert ollama.requests == []
    assert (
        requests.get(server.url + "/conversations/kitchen-o", timeout=5).status_code
        == 404
    )


def test_a_foreign_origin_may_not_delete_a_conversation(server, ollama):
    assert post_chat(server, own_origin(server)).status_code == 200
    refused = requests.delete(
        server.url + "/conversations/kitchen-o", headers={"Origin": FOREIGN}, timeout=5
    )
    assert refused.status_code == 403
    kept = requests.get(server.url + "/conversations/kitchen-o", timeout=5)
    assert kept.status_code == 200 and kept.json()["messages"]
    requests.delete(server.url + "/conversations/kitchen-o", timeout=5)


def test_the_own_origin_a_listed_one_and_no_origin_may_post(server, ollama):
    for origin in (own_origin(server), PAGE):
        assert post_chat(server, origin).status_code == 200, origin
    assert (
        requests.post(
            server.url + "/chat", json={"message": "hi"}, timeout=10
        ).status_code
        == 200
    )


def test_reading_is_not_refused_a_page_just_cannot_read_it(server, ollama):
    response = requests.get(
        server.url + "/agents", headers={"Origin": FOREIGN}, timeout=5
    )
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


def test_the_openai_endpoint_answers_403_in_openais_shape(server, ollama):
    response = requests.post(
        server.url + "/v1/chat/completions",
        json={"model": "general", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Origin": FOREIGN},
        timeout=10,
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "origin_not_allowed"
    assert ollama.requests == []


def test_a_trusted_proxys_scheme_makes_the_https_origin_its_own(start_server, ollama):
    # Loopback is a trusted proxy by default: gunicorn takes the scheme from
    # its X-Forwarded-Proto, as behind nginx with TLS.
    proxied = start_server()
    https_page = f"https://127.0.0.1:{proxied.port}"
    behind_tls = post_chat(proxied, https_page, **{"X-Forwarded-Proto": "https"})
    assert behind_tls.status_code == 200
    assert post_chat(proxied, https_page).status_code == 403


def test_an_untrusted_peer_cannot_claim_https(start_server, ollama):
    direct = start_server(TRUSTED_PROXIES="")
    https_page = f"https://127.0.0.1:{direct.port}"
    claimed = post_chat(direct, https_page, **{"X-Forwarded-Proto": "https"})
    assert claimed.status_code == 403
    assert post_chat(direct, own_origin(direct)).status_code == 200


def test_cors_origins_star_lets_every_origin_post(start_server, ollama):
    anyone = start_server(CORS_ORIGINS="*")
    assert post_chat(anyone, FOREIGN).status_code == 200
