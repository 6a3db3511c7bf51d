"""Client addresses behind trusted proxies, and only behind them."""

from __future__ import annotations

import pytest

from piagent.settings import Settings, SettingsError
from piagent.web.guards.proxy import TrustedProxies


def client_seen(peer: str, trusted: str = "127.0.0.1,::1", **headers: str) -> dict:
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        return []

    environ = {"REMOTE_ADDR": peer}
    environ.update({"HTTP_" + k.upper(): v for k, v in headers.items()})
    TrustedProxies(app, trusted)(environ, lambda *a: None)
    return seen


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        ("127.0.0.1", "192.168.1.20", "192.168.1.20"),
        # The client wrote the left entry itself; nginx appended what it saw.
        ("127.0.0.1", "6.6.6.6, 192.168.1.20", "192.168.1.20"),
        # Trusted hops on the right are skipped.
        ("127.0.0.1", "192.168.1.20, 127.0.0.1", "192.168.1.20"),
        ("::1", "2001:db8::7", "2001:db8::7"),
        ("::ffff:127.0.0.1", "192.168.1.20", "192.168.1.20"),
        # Every hop trusted: the left-most is the closest known to the client.
        ("127.0.0.1", "::1, 127.0.0.1", "::1"),
        # An untrusted peer's headers are ignored.
        ("192.168.1.5", "6.6.6.6", "192.168.1.5"),
        # A malformed entry leaves the peer's address alone.
        ("127.0.0.1", "6.6.6.6, not-an-ip", "127.0.0.1"),
    ],
)
def test_forwarded_for_is_read_from_the_right_and_only_from_trusted_peers(
    peer, forwarded_for, expected
):
    seen = client_seen(peer, x_forwarded_for=forwarded_for)
    assert seen["REMOTE_ADDR"] == expected


def test_real_ip_is_the_fallback_and_the_proxy_is_kept():
    seen = client_seen("127.0.0.1", x_real_ip="192.168.1.20")
    assert seen["REMOTE_ADDR"] == "192.168.1.20"
    assert seen["piagent.proxy_addr"] == "127.0.0.1"
    assert client_seen("127.0.0.1", x_real_ip="nonsense")["REMOTE_ADDR"] == (
        "127.0.0.1"
    )


def test_networks_are_trusted_and_an_empty_list_trusts_nobody():
    seen = client_seen("10.0.0.9", "10.0.0.0/8", x_forwarded_for="192.168.1.20")
    assert seen["REMOTE_ADDR"] == "192.168.1.20"
    seen = client_seen("127.0.0.1", "", x_forwarded_for="192.168.1.20")
    assert seen["REMOTE_ADDR"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"trusted_proxies": "localhost"}, "TRUSTED_PROXIES='localhost': expected"),
        ({"trusted_proxies": "10.0.0.0/33"}, "TRUSTED_PROXIES='10.0.0.0/33'"),
        ({"trusted_proxies": "10.0.0.1/8"}, "TRUSTED_PROXIES='10.0.0.1/8'"),
        ({"log_format": "xml"}, "LOG_FORMAT='xml': expected json or text"),
    ],
)
def test_bad_deployment_settings_are_one_clear_line(kwargs, needle):
    with pytest.raises(SettingsError, match="^" + needle.replace("(", r"\(")):
        Settings(**kwargs)


def test_bad_trusted_proxies_stop_start_up_with_piagents_one_line(launch, ollama):
    server = launch({"OLLAMA_HOST": ollama.url, "TRUSTED_PROXIES": "localhost"})
    assert server.wait_exit() != 0
    log = server.log()
    lines = [line for line in log.splitlines() if line.startswith("piagent:")]
    assert lines == [
        "piagent: configuration error: TRUSTED_PROXIES='localhost': expected "
        "comma-separated IP addresses or networks such as 127.0.0.1,::1"
    ]
    assert "Traceback" not in log
