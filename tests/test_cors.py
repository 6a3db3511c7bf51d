"""CORS: off by default; an allowlisted origin may call, preflight included."""

import pytest
import requests

from piagent.settings import Settings, SettingsError

KEY = "kitchen-tablet-0123456789abcdef"
PAGE = "http://192.168.1.20:8080"


def test_no_cors_headers_without_an_allowlist(server):
    read = requests.get(server.url + "/agents", headers={"Origin": PAGE}, timeout=10)
    assert read.status_code == 200
    # A POST from another origin is refused outright (tests/test_origin.py).
    posted = requests.post(
        server.url + "/chat",
        json={"message": "hi"},
        headers={"Origin": PAGE},
        timeout=10,
    )
    assert posted.status_code == 403
    for response in (read, posted):
        assert not [
            h for h in response.headers if h.lower().startswith("access-control")
        ]


@pytest.fixture
def browser_server(start_server):
    return start_server(
        CORS_ORIGINS=f"{PAGE},https://home.example:443,http://[fd00::7]:80",
        API_KEYS=KEY,
    )


def test_preflight_from_an_allowed_origin_is_answered_without_a_key(browser_server):
    response = requests.options(
        browser_server.url + "/chat",
        headers={
            "Origin": PAGE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
        timeout=5,
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == PAGE
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed


def test_allowed_origin_may_read_the_conversation_id_of_a_stream(browser_server):
    response = requests.post(
        browser_server.url + "/chat",
        json={"message": "hi", "stream": True},
        headers={"Origin": PAGE, "Authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == PAGE
    exposed = response.headers["Access-Control-Expose-Headers"]
    assert "X-Conversation-Id" in exposed and "Retry-After" in exposed
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_errors_carry_cors_headers_so_the_page_can_read_them(browser_server):
    response = requests.post(
        browser_server.url + "/chat",
        json={"message": "hi"},
        headers={"Origin": PAGE},
        timeout=10,
    )
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == PAGE


def test_a_page_may_delete_a_conversation_and_read_the_request_id(browser_server):
    preflight = requests.options(
        browser_server.url + "/conversations/kitchen-1",
        headers={
            "Origin": PAGE,
            "Access-Control-Request-Method": "DELETE",
            "Access-Control-Request-Headers": "x-api-key, x-request-id",
        },
        timeout=5,
    )
    assert preflight.status_code == 200
    assert "DELETE" in preflight.headers["Access-Control-Allow-Methods"]
    assert "x-request-id" in preflight.headers["Access-Control-Allow-Headers"].lower()
    deleted = requests.delete(
        browser_server.url + "/conversations/kitchen-1",
        headers={"Origin": PAGE, "X-API-Key": KEY, "X-Request-Id": "page-42"},
        timeout=5,
    )
    assert deleted.status_code == 204
    assert deleted.headers["X-Request-Id"] == "page-42"
    assert "X-Request-Id" in deleted.headers["Access-Control-Expose-Headers"]


def test_other_origins_get_no_cors_headers(browser_server, ollama):
    for method, status in (("OPTIONS", 200), ("GET", 200), ("POST", 403)):
        response = requests.request(
            method,
            browser_server.url + ("/agents" if method == "GET" else "/chat"),
            json={"message": "hi"},
            headers={
                "Origin": "http://evil.example",
                "Access-Control-Request-Method": "POST",
                "Authorization": f"Bearer {KEY}",
            },
            timeout=10,
        )
        # A read is served, just not readable by the page; a POST is refused.
        assert response.status_code == status, method
        assert "Access-Control-Allow-Origin" not in response.headers
    assert ollama.requests == []


@pytest.mark.parametrize(
    "value", ["192.168.1.20:8080", "http://pi.local/", "http://pi.local/app", "ftp://x"]
)
def test_origins_must_be_scheme_host_port(value):
    with pytest.raises(SettingsError) as caught:
        Settings(cors_origins=value)
    assert str(caught.value).startswith(f"CORS_ORIGINS={value!r}: expected origins")


def test_a_star_allows_every_origin_without_credentials(start_server):
    server = start_server(CORS_ORIGINS="*", API_KEYS=KEY)
    response = requests.get(
        server.url + "/agents",
        headers={"Origin": "http://anything.example", "X-API-Key": KEY},
        timeout=5,
    )
    assert response.status_code == 200
    # Flask-CORS names the origin back (with Vary: Origin, so caches keep the
    # answers apart) rather than sending a literal *; browsers accept either.
    assert response.headers["Access-Control-Allow-Origin"] == "http://anything.example"
    assert "Origin" in response.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.parametrize("origin", ["https://home.example", "http://[fd00::7]"])
def test_an_origin_listed_with_its_default_port_gets_cors_as_browsers_send_it(
    browser_server, origin
):
    """Browsers leave the default port out of Origin; the listed
    `https://home.example:443` is that origin, for CORS as for the Origin check."""
    response = requests.post(
        browser_server.url + "/chat",
        json={"message": "hi"},
        headers={"Origin": origin, "Authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == origin


@pytest.mark.parametrize(
    "origin",
    ["https://home.example.evil.test", "http://f:80", "https://home.example:8443"],
)
def test_an_origin_that_only_begins_like_a_listed_one_gets_no_cors(
    browser_server, origin
):
    response = requests.get(
        browser_server.url + "/agents",
        headers={"Origin": origin, "Authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    assert "Access-Control-Allow-Origin" not in response.headers
