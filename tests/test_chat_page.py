"""The chat page over HTTP: its headers, its switch, its budget, its guards."""

from __future__ import annotations

import re

import pytest

from piagent import create_app
from piagent.settings import Settings
from piagent.web.static_files import STATIC

PAGE = STATIC / "page"
PAGE_FILES = sorted(p for p in PAGE.rglob("*") if p.is_file())
BUDGET_BYTES = 100_000
KEY = "page-test-key-0123456789"


class Client:
    """A test client whose answers are read and closed (a file stays open
    until its response is closed)."""

    def __init__(self, **settings):
        app = create_app(Settings(ollama_host="http://127.0.0.1:9", **settings))
        self.test = app.test_client()

    def get(self, path, **kwargs):
        response = self.test.get(path, **kwargs)
        response.get_data()
        response.close()
        return response


def client(**settings):
    return Client(**settings)


@pytest.mark.parametrize("path", ["/", "/static/chat.css", "/static/js/main.js"])
def test_page_files_carry_the_csp_and_cache_headers(path):
    response = client().get(path)
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    for directive in (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ):
        assert directive in csp
    assert "unsafe" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["ETag"]
    again = client().get(path, headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""


def test_content_types_are_right_for_modules_and_styles():
    test = client()
    assert test.get("/").content_type == "text/html; charset=utf-8"
    assert test.get("/static/chat.css").content_type == "text/css; charset=utf-8"
    assert test.get("/static/js/api.js").content_type.startswith("text/javascript")


@pytest.mark.parametrize(
    "path", ["/static/nope.js", "/static/../settings.py", "/static/%2e%2e/app.py"]
)
def test_a_missing_or_escaping_file_is_the_json_404(path):
    response = client().get(path)
    assert response.status_code == 404
    assert "detail" in response.get_json()


def test_web_ui_false_makes_the_page_the_404_it_was():
    test = client(web_ui=False)
    for path in ("/", "/static/js/main.js"):
        response = test.get(path)
        assert response.status_code == 404
        assert "detail" in response.get_json()
        assert "Content-Security-Policy" not in response.headers


def test_with_keys_the_page_needs_none_but_the_api_does():
    test = client(api_keys=KEY)
    assert test.get("/").status_code == 200
    assert test.get("/static/js/main.js").status_code == 200
    assert test.get("/agents").status_code == 401
    assert test.get("/agents", headers={"X-API-Key": KEY}).status_code == 200


def test_with_keys_and_web_ui_off_slash_asks_for_a_key_as_before():
    assert client(api_keys=KEY, web_ui=False).get("/").status_code == 401


def test_the_page_is_not_rate_limited_but_the_api_is():
    test = client(rate_limit_default="2/minute")
    for _ in range(5):
        assert test.get("/").status_code == 200
        assert test.get("/static/chat.css").status_code == 200
    statuses = [test.get("/agents").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_the_pages_own_files_stay_within_the_budget():
    total = sum(path.stat().st_size for path in PAGE_FILES)
    assert total < BUDGET_BYTES, f"{total} bytes"


@pytest.mark.parametrize("path", PAGE_FILES, ids=lambda p: p.name)
def test_no_file_of_the_page_can_insert_html(path):
    text = path.read_text()
    for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
        assert forbidden not in text, f"{forbidden} in {path.name}"
    assert "eval(" not in text and "new Function" not in text


def test_the_page_has_no_inline_script_or_style():
    html = (PAGE / "index.html").read_text()
    assert re.findall(r"<script\b[^>]*>", html) == [
        '<script type="module" src="/static/js/main.js">'
    ]
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"


def test_the_page_files_are_package_data():
    """An installed piagent (not only a checkout) serves the page."""
    setup = (STATIC.parents[2] / "setup.cfg").read_text()
    for pattern in ("web/static/page/*.*", "web/static/page/js/*.js"):
        assert pattern in setup
