"""ALLOWED_HOSTS: a request naming another host (DNS rebinding) is a 400 before
anything else runs; the names of this machine and the configured ones pass."""

from __future__ import annotations

import uuid
from ipaddress import ip_address

import pytest
import requests

from piagent.hosts import (
    AllowedHosts,
    allowed_hosts,
    default_hosts,
    interface_addresses,
    parse_if_inet6,
)
from piagent.settings import Settings, SettingsError, host_entry
from piagent.web.guards.hosts import host_allowed
from tests.support.logs import request_line

FOREIGN = "evil.attacker.example"
KEY = "kitchen-tablet-0123456789abcdef"
# Every endpoint, the public ones included: a rebinding page probes /health first.
ENDPOINTS = [
    ("GET", "/health", None),
    ("GET", "/ready", None),
    ("GET", "/agents", None),
    ("POST", "/chat", {"message": "hi", "conversation_id": "rebound"}),
    ("POST", "/chat", {"message": "hi", "stream": True, "conversation_id": "rebound"}),
    ("GET", "/conversations/kitchen", None),
    ("DELETE", "/conversations/kitchen", None),
    ("GET", "/v1/models", None),
    (
        "POST",
        "/v1/chat/completions",
        {"model": "general", "messages": [{"role": "user", "content": "hi"}]},
    ),
    ("GET", "/", None),
    ("GET", "/openapi.json", None),
    ("GET", "/docs", None),
    ("GET", "/nope", None),
]
LAN = "pi.local,*.home.arpa,192.168.1.20,fd00::20"


def call(server, method, path, body=None, host=None, **headers):
    if host is not None:
        headers["Host"] = host
    return requests.request(
        method, server.url + path, json=body, headers=headers, timeout=10
    )


# --- The setting -------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "parsed"),
    [
        ("pi.local", ("name", "pi.local")),
        ("PI.Local:8000", ("name", "pi.local")),
        ("*.home.arpa", ("domain", "home.arpa")),
        ("192.168.1.20:80", ("address", "192.168.1.20")),
        ("::1", ("address", "::1")),
        ("[fd00:0::20]:8000", ("address", "fd00::20")),
        ("bücher.example", ("name", "xn--bcher-kva.example")),
    ],
)
def test_entries_are_names_domains_or_addresses_without_ports(entry, parsed):
    assert host_entry(entry) == parsed


@pytest.mark.parametrize(
    "value",
    [
        "http://pi.local",
        "pi.local/",
        "pi.local:http",
        "pi_box.local",
        "*.192.168.1.20",
        "pi..local",
        "[::1",
        "[::1]8000",
        "fe80::1%eth0",
        "*,pi.local",
        "*.",
        "pi local",
    ],
)
def test_a_malformed_value_is_one_line_naming_the_setting(value):
    with pytest.raises(SettingsError) as caught:
        Settings(allowed_hosts=value)
    message = str(caught.value)
    assert message.startswith(f"ALLOWED_HOSTS={value!r}: expected host names")
    assert "* alone" in message and "\n" not in message


def test_defaults_are_loopback_this_machines_names_and_the_bind():
    hosts = default_hosts("192.168.1.20:8000", hostname="Pi", interfaces=[])
    assert hosts == [
        "localhost",
        "*.localhost",
        "127.0.0.1",
        "::1",
        "pi",
        "pi.local",
        "192.168.1.20",
    ]
    assert default_hosts("127.0.0.1:8000,unix:/run/p.sock", hostname="pi.lan")[4:] == [
        "pi.lan",
        "pi.local",
        "127.0.0.1",
    ]


@pytest.mark.parametrize("bind", ["0.0.0.0:8000", "[::]:8000", "127.0.0.1:1,[::]:2"])
def test_a_wildcard_bind_adds_every_interface_address_but_link_local(bind):
    own = [ip_address("192.168.1.20"), ip_address("fd00::20"), ip_address("fe80::1")]
    hosts = default_hosts(bind, hostname="pi", interfaces=own)
    assert "192.168.1.20" in hosts and "fd00::20" in hosts
    assert "fe80::1" not in hosts and "0.0.0.0" not in hosts and "::" not in hosts


def test_the_setting_replaces_the_defaults_and_star_turns_the_check_off():
    listed = allowed_hosts(Settings(allowed_hosts=LAN), hostname="pi")
    assert listed.names == ("pi.local", ".home.arpa", "192.168.1.20")
    assert listed.addresses == {ip_address("fd00::20")}
    assert listed.describe() == "pi.local, *.home.arpa, 192.168.1.20, fd00::20"
    assert allowed_hosts(Settings(allowed_hosts="*")).anything


def test_proc_net_if_inet6_is_read_line_by_line():
    text = (
        "00000000000000000000000000000001 01 80 10 80       lo\n"
        "fd000000000000000000000000000020 02 40 00 00     eth0\n"
        "fe80000000000000021122fffe334455 02 40 20 80     eth0\n"
        "garbage\n\n"
    )
    assert parse_if_inet6(text) == {
        ip_address("::1"),
        ip_address("fd00::20"),
        ip_address("fe80::211:22ff:fe33:4455"),
    }


def test_interface_addresses_are_addresses_whatever_this_machine_has():
    # What this machine has is its own business; that it is read without an
    # error, as addresses, is ours.
    found = interface_addresses()
    assert all(address.version in (4, 6) for address in found)


# --- The match ---------------------------------------------------------------

DEFAULTS = AllowedHosts.of(
    default_hosts("127.0.0.1:8000", hostname="pi", interfaces=[])
)


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:8000",
        "LOCALHOST:8000",
        "app.localhost:8000",
        "127.0.0.1",
        "127.0.0.1:8000",
        "[::1]",
        "[::1]:8000",
        "[0:0::1]:80",
        "pi",
        "pi.local:80",
    ],
)
def test_loopback_and_this_machines_names_pass_by_default(host):
    assert host_allowed(host, DEFAULTS)


@pytest.mark.parametrize(
    "host",
    [
        FOREIGN,
        f"{FOREIGN}:8000",
        "localhost.attacker.example",
        "127.0.0.2",
        "[::2]:8000",
        "[::1]:99999",
        "localhost:0",
        "[::1",
        "[zz::1]",
        "local host",
        "",
    ],
)
def test_other_hosts_and_broken_headers_are_refused(host):
    assert not host_allowed(host, DEFAULTS)


def test_configured_names_domains_and_addresses_pass_and_only_they():
    lan = allowed_hosts(Settings(allowed_hosts=LAN))
    for host in ("pi.local", "home.arpa", "kitchen.home.arpa:8000", "[fd00::20]:80"):
        assert host_allowed(host, lan), host
    for host in ("localhost", "127.0.0.1:8000", "[::1]:8000", "pi", "arpa"):
        assert not host_allowed(host, lan), host
    # Only IPv6 listed: the names werkzeug matches are none, which it must
    # never be handed (it reads an empty list as "any").
    only_v6 = allowed_hosts(Settings(allowed_hosts="::1"))
    assert host_allowed("[::1]:8000", only_v6)
    assert not host_allowed("localhost", only_v6)


# --- Through the real server -------------------------------------------------


@pytest.fixture
def server(start_server, ollama):
    return start_server(LOG_FORMAT="json")


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_a_foreign_host_is_400_on_every_endpoint_and_reaches_nothing(
    server, ollama, method, path, body
):
    rid = uuid.uuid4().hex
    response = call(server, method, path, body, host=FOREIGN, **{"X-Request-Id": rid})
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    if path.startswith("/v1/"):
        error = response.json()["error"]
        assert error["code"] == "host_not_allowed"
        message = error["message"]
    else:
        assert set(response.json()) == {"detail"}
        message = response.json()["detail"]
    assert message.startswith(f"Host {FOREIGN!r} is not in ALLOWED_HOSTS")
    assert ollama.requests == []
    line = request_line(server, rid)
    assert (line["status"], line["ended"]) == (400, "rejected")


def test_a_refused_chat_stores_nothing(server, ollama):
    body = {"message": "my secret is 42", "conversation_id": "rebound-1"}
    assert call(server, "POST", "/chat", body, host=FOREIGN).status_code == 400
    assert call(server, "GET", "/conversations/rebound-1").status_code == 404
    assert ollama.requests == []


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}", "[::1]"],
)
def test_loopback_names_with_and_without_ports_are_served(server, ollama, host):
    host = host.format(port=server.port)
    assert call(server, "GET", "/health", host=host).status_code == 200
    chat = call(server, "POST", "/chat", {"message": "hi"}, host=host)
    assert chat.status_code == 200 and chat.json()["reply"]


def test_configured_names_are_served_and_the_defaults_no_longer(start_server, ollama):
    # 127.0.0.1 kept, as the docs advise: the test runner polls /health by it.
    lan = start_server(ALLOWED_HOSTS=f"{LAN},127.0.0.1")
    for host in ("pi.local", f"kitchen.home.arpa:{lan.port}", "192.168.1.20:80"):
        assert call(lan, "GET", "/agents", host=host).status_code == 200, host
    assert call(lan, "GET", "/agents", host="[fd00::20]").status_code == 200
    assert call(lan, "GET", "/health", host="localhost").status_code == 400
    lan.wait_for_log(
        "allowed hosts: pi.local, *.home.arpa, 192.168.1.20, 127.0.0.1, fd00::20"
    )


def test_the_host_check_comes_before_keys_and_rate_limits(start_server, ollama):
    guarded = start_server(API_KEYS=KEY, RATE_LIMIT_DEFAULT="2/minute")
    # Without a key: 400, not 401, and the refusals use none of the budget.
    for _ in range(3):
        assert call(guarded, "GET", "/agents", host=FOREIGN).status_code == 400
    with_key = {"X-API-Key": KEY}
    assert call(guarded, "GET", "/agents", **with_key).status_code == 200
    assert call(guarded, "GET", "/agents", **with_key).status_code == 200
    assert call(guarded, "GET", "/agents", **with_key).status_code == 429


def test_allowed_hosts_star_answers_any_host_and_warns_at_start(start_server, ollama):
    open_server = start_server(ALLOWED_HOSTS="*")
    assert call(open_server, "GET", "/health", host=FOREIGN).status_code == 200
    log = open_server.wait_for_log("ALLOWED_HOSTS=*: piagent answers to any host")
    assert (
        "WARNING" in log.split("ALLOWED_HOSTS=*: piagent answers")[0].splitlines()[-1]
    )


def test_a_malformed_value_stops_the_real_server_in_one_line(launch, fake_ollama):
    server = launch({"OLLAMA_HOST": fake_ollama.url, "ALLOWED_HOSTS": "http://pi"})
    assert server.wait_exit() != 0
    log = server.log()
    lines = [line for line in log.splitlines() if line.startswith("piagent:")]
    assert len(lines) == 1
    assert lines[0].startswith(
        "piagent: configuration error: ALLOWED_HOSTS='http://pi': expected host names"
    )
    assert "Traceback" not in log
