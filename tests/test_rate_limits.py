"""Rate limits through the real server: per key or address, 429 in our shape."""

import pytest
import requests

from piagent.settings import Settings, SettingsError

KEY = "kitchen-tablet-0123456789abcdef"
OTHER = "garage-script-fedcba9876543210"
KEY2 = "kitchen-laptop-0123456789abcdef"


def chat(server, headers=None):
    return requests.post(
        server.url + "/chat", json={"message": "hi"}, headers=headers, timeout=10
    )


def test_chat_over_its_limit_is_429_with_retry_after_and_headers(start_server):
    server = start_server(RATE_LIMIT_CHAT="2/minute", RATE_LIMIT_DEFAULT="")
    first = chat(server)
    assert first.status_code == 200
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert first.headers["X-RateLimit-Remaining"] == "1"
    assert "Retry-After" not in first.headers
    assert chat(server).status_code == 200
    refused = chat(server)
    assert refused.status_code == 429
    assert set(refused.json()) == {"detail"}
    assert "rate limit exceeded (2 per 1 minute)" in refused.json()["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert int(refused.headers["X-RateLimit-Reset"]) > 0
    # The cheap endpoints are limited separately, here not at all.
    assert requests.get(server.url + "/agents", timeout=5).status_code == 200


def test_cheap_endpoints_have_their_own_limit_and_health_none(start_server):
    server = start_server(RATE_LIMIT_CHAT="", RATE_LIMIT_DEFAULT="3/minute")
    statuses = [
        requests.get(server.url + "/agents", timeout=5).status_code for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    assert all(
        requests.get(server.url + "/health", timeout=5).status_code == 200
        for _ in range(10)
    )
    assert chat(server).status_code == 200


def test_each_key_has_its_own_budget_and_wrong_keys_share_the_address(start_server):
    server = start_server(
        API_KEYS=f"{KEY},{OTHER}", RATE_LIMIT_CHAT="1/minute", RATE_LIMIT_DEFAULT=""
    )
    assert chat(server, {"X-API-Key": KEY}).status_code == 200
    assert chat(server, {"X-API-Key": KEY}).status_code == 429
    assert chat(server, {"X-API-Key": OTHER}).status_code == 200
    # Guessing keys is counted against the client address: once, then 429.
    assert chat(server, {"X-API-Key": "guess-000000000000000"}).status_code == 401
    assert chat(server, {"X-API-Key": "guess-000000000000001"}).status_code == 429
    log = server.log()
    assert KEY not in log and OTHER not in log


def test_the_keys_of_one_owner_share_a_budget(start_server, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "keys"
    keys.write_text(f"alice {KEY}\nalice {KEY2}\nbob {OTHER}\n")
    server = start_server(
        API_KEYS_FILE=str(keys), RATE_LIMIT_CHAT="1/minute", RATE_LIMIT_DEFAULT=""
    )
    assert chat(server, {"X-API-Key": KEY}).status_code == 200
    # Alice's second key is still alice: no fresh budget by switching keys.
    assert chat(server, {"X-API-Key": KEY2}).status_code == 429
    assert chat(server, {"X-API-Key": OTHER}).status_code == 200
    assert chat(server, {"X-API-Key": "guess-000000000000000"}).status_code == 401
    assert chat(server, {"X-API-Key": "guess-000000000000001"}).status_code == 429


def test_clients_behind_a_trusted_proxy_have_budgets_of_their_own(start_server):
    server = start_server(RATE_LIMIT_CHAT="1/minute", RATE_LIMIT_DEFAULT="")
    kitchen = {"X-Forwarded-For": "192.168.1.20"}
    garage = {"X-Forwarded-For": "192.168.1.30"}
    assert chat(server, kitchen).status_code == 200
    assert chat(server, kitchen).status_code == 429
    # The test client is loopback, a trusted proxy by default: its header counts.
    assert chat(server, garage).status_code == 200


def test_forwarded_addresses_from_an_untrusted_peer_share_its_budget(start_server):
    server = start_server(
        RATE_LIMIT_CHAT="1/minute", RATE_LIMIT_DEFAULT="", TRUSTED_PROXIES=""
    )
    assert chat(server, {"X-Forwarded-For": "192.168.1.20"}).status_code == 200
    # A client cannot buy a fresh budget by writing the header itself.
    assert chat(server, {"X-Forwarded-For": "192.168.1.30"}).status_code == 429


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("rate_limit_chat", "lots"),
        ("rate_limit_chat", "30/min"),
        ("rate_limit_default", "0/minute"),
        ("rate_limit_default", "30/minute;"),
    ],
)
def test_bad_limits_stop_start_up_in_one_line(variable, value):
    with pytest.raises(SettingsError) as caught:
        Settings(**{variable: value})
    assert str(caught.value) == (
        f"{variable.upper()}={value!r}: expected limits such as 30/minute;500/day "
        "(empty for none)"
    )


def test_limits_accept_several_windows():
    settings = Settings(rate_limit_chat="30/minute;500/day", rate_limit_default="")
    assert settings.rate_limit_chat == "30/minute;500/day"
