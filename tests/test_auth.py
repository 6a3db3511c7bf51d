"""API keys: every endpoint refuses a missing or wrong key; no key reaches a log."""

import socket

import pytest
import requests

from piagent.keys import (
    derived_name,
    digest_of,
    is_loopback_bind,
    load_api_keys,
    parse_keys_file,
)
from piagent.settings import Settings, SettingsError

KEY = "kitchen-tablet-0123456789abcdef"
OTHER = "garage-script-fedcba9876543210"
WRONG = "not-the-key-at-all-0000000000"
ENDPOINTS = [
    ("GET", "/agents", None),
    ("POST", "/chat", {"message": "hi"}),
    ("POST", "/chat", {"message": "hi", "stream": True}),
    ("GET", "/ready", None),
    ("GET", "/conversations/kitchen-1", None),
    ("DELETE", "/conversations/kitchen-1", None),
    ("GET", "/nope", None),
]


@pytest.fixture
def guarded(start_server, tmp_path_factory):
    keys_file = tmp_path_factory.mktemp("keys") / "keys"
    keys_file.write_text(f"# the garage\n{OTHER}  # added in May\n\n")
    keys_file.chmod(0o600)
    return start_server(API_KEYS=KEY, API_KEYS_FILE=str(keys_file), LOG_LEVEL="debug")


def call(server, method, path, body, headers):
    return requests.request(
        method, server.url + path, json=body, headers=headers, timeout=10
    )


def detail_of(response):
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"detail"}
    return body["detail"]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_missing_key_is_401_with_a_bearer_challenge(
    guarded, ollama, method, path, body
):
    response = call(guarded, method, path, body, {})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="piagent"'
    assert detail_of(response) == (
        "missing API key: send Authorization: Bearer <key> or X-API-Key: <key>"
    )
    assert ollama.requests == []


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {WRONG}"},
        {"X-API-Key": WRONG},
        {"Authorization": f"Bearer {KEY[:-1]}"},
        {"X-API-Key": KEY + "x"},
    ],
    ids=["bearer", "x-api-key", "prefix", "longer"],
)
def test_wrong_key_is_401_without_echoing_it(
    guarded, ollama, method, path, body, headers
):
    response = call(guarded, method, path, body, headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="piagent", error="invalid_token"'
    )
    assert detail_of(response) == "invalid API key"
    assert KEY not in response.text and WRONG not in response.text
    assert ollama.requests == []


def test_a_key_under_another_scheme_counts_as_no_key(guarded, ollama):
    # Only Bearer carries a key: Basic credentials belong to a proxy in front.
    response = call(guarded, "GET", "/agents", None, {"Authorization": f"Basic {KEY}"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="piagent"'
    assert detail_of(response).startswith("missing API key")
    assert KEY not in response.text


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {KEY}"},
        {"Authorization": f"bearer   {KEY}"},
        {"X-API-Key": KEY},
        {"X-API-Key": OTHER},
        {"Authorization": "Basic dXNlcjpwYXNz", "X-API-Key": OTHER},
    ],
    ids=["bearer", "scheme-case", "x-api-key", "key-from-file", "behind-basic"],
)
def test_right_key_is_served_on_every_endpoint(guarded, ollama, headers):
    assert call(guarded, "GET", "/agents", None, headers).json() == {
        "agents": ["general"]
    }
    chat = call(guarded, "POST", "/chat", {"message": "hi"}, headers)
    assert chat.status_code == 200 and chat.json()["reply"]
    stream = call(guarded, "POST", "/chat", {"message": "hi", "stream": True}, headers)
    assert stream.status_code == 200 and stream.text
    cid = chat.json()["conversation_id"]
    kept = call(guarded, "GET", f"/conversations/{cid}", None, headers)
    assert kept.status_code == 200 and kept.json()["messages"]
    assert call(
        guarded, "DELETE", f"/conversations/{cid}", None, headers
    ).status_code == (204)
    assert call(guarded, "GET", "/ready", None, headers).status_code == 200
    assert call(guarded, "GET", "/nope", None, headers).status_code == 404


def test_health_stays_open(guarded):
    response = requests.get(guarded.url + "/health", timeout=5)
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_no_key_reaches_the_log(guarded, ollama):
    for headers in (
        {"Authorization": f"Bearer {KEY}"},
        {"X-API-Key": OTHER},
        {"Authorization": f"Bearer {WRONG}"},
        {"X-API-Key": WRONG},
    ):
        call(guarded, "POST", "/chat", {"message": "hi"}, headers)
        call(guarded, "POST", "/chat", {"message": "hi", "stream": True}, headers)
        call(guarded, "GET", "/agents", None, headers)
    log = guarded.wait_for_log("refused POST /chat")
    for secret in (KEY, OTHER, WRONG, KEY[:12], OTHER[:12]):
        assert secret not in log


def test_a_keys_file_every_user_can_read_is_warned_about(tmp_path, caplog):
    path = tmp_path / "keys"
    path.write_text(KEY + "\n")
    path.chmod(0o644)
    with caplog.at_level("WARNING", logger="piagent"):
        keys = load_api_keys(Settings(api_keys_file=str(path)))
    assert len(keys) == 1
    assert "is readable by every user; chmod 600 it" in caplog.text
    assert KEY not in caplog.text
    path.chmod(0o600)
    caplog.clear()
    load_api_keys(Settings(api_keys_file=str(path)))
    assert "readable by every user" not in caplog.text


def test_a_keys_file_that_is_not_text_stops_start_up_in_one_line(tmp_path):
    path = tmp_path / "keys"
    path.write_bytes(b"\xff\xfe" + KEY.encode("utf-16-le"))
    with pytest.raises(SettingsError) as caught:
        load_api_keys(Settings(api_keys_file=str(path)))
    assert str(caught.value).startswith(f"API_KEYS_FILE={str(path)!r}: cannot read")
    assert "\n" not in str(caught.value)


def test_keys_file_skips_comments_and_blank_lines():
    text = f"# keys\n\n  {KEY}\n{OTHER} # the garage\n"
    assert [(line.digest, line.number) for line in parse_keys_file(text, "f")] == [
        (digest_of(KEY), 3),
        (digest_of(OTHER), 4),
    ]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("short\n", "line 1: the key has 5 characters; expected at least 16"),
        (f"{KEY} {OTHER} {KEY}\n", "line 1: expected NAME KEY, NAME sha256:HEX or"),
        ("# only comments\n", "expected at least one key"),
    ],
)
def test_bad_keys_file_stops_start_up_without_echoing_keys(tmp_path, text, needle):
    path = tmp_path / "keys"
    path.write_text(text)
    with pytest.raises(SettingsError) as caught:
        load_api_keys(Settings(api_keys_file=str(path)))
    assert needle in str(caught.value)
    assert KEY not in str(caught.value) and "short" not in str(caught.value)


def test_bad_key_in_api_keys_is_named_by_position_only():
    with pytest.raises(SettingsError) as caught:
        load_api_keys(Settings(api_keys=f"{KEY}, tiny secret"))
    message = str(caught.value)
    assert message.startswith("API_KEYS: key 2 has")
    assert "tiny" not in message and KEY not in message


def test_missing_keys_file_is_one_line():
    with pytest.raises(SettingsError) as caught:
        load_api_keys(Settings(api_keys_file="/nonexistent/keys"))
    assert "API_KEYS_FILE='/nonexistent/keys': cannot read the file" in str(
        caught.value
    )


def test_a_bad_key_stops_the_real_server_in_one_line(launch, fake_ollama):
    secret = "tiny-secret"
    server = launch({"OLLAMA_HOST": fake_ollama.url, "API_KEYS": secret})
    assert server.wait_exit() != 0
    log = server.log()
    lines = [line for line in log.splitlines() if line.startswith("piagent:")]
    assert lines == [
        "piagent: configuration error: API_KEYS: key 1 has 11 characters; "
        "expected at least 16 (make one with: python3 -c 'import secrets; "
        "print(secrets.token_urlsafe(32))')"
    ]
    assert secret not in log


def test_keys_identify_their_owner_and_hide_in_repr():
    keys = load_api_keys(Settings(api_keys=f"{KEY},{OTHER}"))
    assert keys.identify(OTHER) == derived_name(digest_of(OTHER))
    assert keys.identify(KEY) == derived_name(digest_of(KEY))
    assert keys.identify(WRONG) is None and keys.identify("ключ") is None
    assert KEY not in repr(keys) and KEY not in repr(Settings(api_keys=KEY))


@pytest.mark.parametrize(
    ("bind", "loopback"),
    [
        ("127.0.0.1:8000", True),
        ("127.3.4.5:80", True),
        ("localhost:8000", True),
        ("[::1]:8000", True),
        ("unix:/run/piagent.sock", True),
        ("127.0.0.1:8000,unix:/tmp/s", True),
        ("0.0.0.0:8000", False),
        ("[::]:8000", False),
        ("192.168.1.20:8000", False),
        ("pi.local:8000", False),
        ("fd://3", False),
        ("127.0.0.1:8000,0.0.0.0:9000", False),
    ],
)
def test_loopback_binds_are_told_from_network_ones(bind, loopback):
    assert is_loopback_bind(bind) is loopback


def env_file_with_bind(tmp_path, fake_ollama, bind: str) -> None:
    (tmp_path / ".env").write_text(f"BIND={bind}\nOLLAMA_HOST={fake_ollama.url}\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_network_bind_without_keys_is_refused_in_one_line(
    launch, fake_ollama, tmp_path
):
    env_file_with_bind(tmp_path, fake_ollama, f"0.0.0.0:{free_port()}")
    server = launch({}, workdir=tmp_path, bind=False)
    assert server.wait_exit() != 0
    log = server.log()
    lines = [line for line in log.splitlines() if line.startswith("piagent:")]
    assert len(lines) == 1
    assert lines[0].startswith("piagent: configuration error: BIND='0.0.0.0:")
    assert "ALLOW_UNAUTHENTICATED=true" in lines[0] and "API_KEYS" in lines[0]
    assert "Traceback" not in log


def test_refusal_sees_a_bind_given_on_the_command_line(launch, fake_ollama):
    port = free_port()
    server = launch(
        {
            "OLLAMA_HOST": fake_ollama.url,
            "GUNICORN_CMD_ARGS": f"--bind 0.0.0.0:{port}",
        }
    )
    assert server.wait_exit() != 0
    assert f"BIND='0.0.0.0:{port}'" in server.log()


def test_network_bind_with_keys_or_explicit_opt_out_starts(
    launch, fake_ollama, tmp_path
):
    env_file_with_bind(tmp_path, fake_ollama, f"0.0.0.0:{free_port()}")
    with_keys = launch({"API_KEYS": KEY}, workdir=tmp_path, bind=False).wait_ready()
    assert requests.get(with_keys.url + "/agents", timeout=5).status_code == 401
    with_keys.stop()
    opted_out = launch(
        {"ALLOW_UNAUTHENTICATED": "true"}, workdir=tmp_path, bind=False
    ).wait_ready()
    assert requests.get(opted_out.url + "/agents", timeout=5).status_code == 200
    opted_out.wait_for_log("without API keys (ALLOW_UNAUTHENTICATED=true)")
