"""The chat page in a real browser: headless chromium against the real gunicorn
and the fake Ollama. Controls are found by their accessible names."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest

from tests.support.browser import Browser
from tests.support.fake_ollama import Behaviour, Step

KEY = "page-test-key-0123456789"
REPLIES = "//*[@role='log']//div[contains(@class,'assistant')]/div[@class='body']"


def type_message(browser: Browser, text: str) -> None:
    from selenium.webdriver.common.keys import Keys

    box = browser.labelled("Message")
    box.click()
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def replies(browser: Browser) -> list[str]:
    return browser.js(
        "return [...document.querySelectorAll("
        "'[role=log] .message.assistant .body')].map(e => e.textContent)"
    )


def notes(browser: Browser) -> list[str]:
    return browser.js(
        "return [...document.querySelectorAll('[role=log] .usage, [role=log] .status')]"
        ".map(e => e.textContent)"
    )


def alert_text(browser: Browser) -> str:
    return browser.role("alert").text


def agents_loaded(browser: Browser) -> None:
    select = browser.labelled("Agent")
    browser.wait(lambda: select.get_attribute("value") == "general", 5, "agents")


def wait_reply_done(browser: Browser, count: int = 1, timeout: float = 10) -> str:
    browser.wait(lambda: len(notes(browser)) >= count, timeout, "reply's usage line")
    return replies(browser)[count - 1]


@pytest.fixture
def page(browser, start_server, ollama):
    server = start_server()
    browser.open(server.url + "/")
    agents_loaded(browser)
    return server


def test_page_loads_with_no_console_error_and_nothing_off_host(browser, page):
    console, urls = browser.logs()
    assert [e for e in console if e["level"] in ("SEVERE", "WARNING")] == []
    origin = urlsplit(page.url)
    off_host = [
        url
        for url in urls
        if not url.startswith("data:") and urlsplit(url).netloc != origin.netloc
    ]
    assert urls and off_host == []
    assert {urlsplit(u).path for u in urls} >= {
        "/",
        "/static/chat.css",
        "/static/js/main.js",
        "/agents",
    }
    assert browser.button("Send").is_enabled()
    assert not browser.button("Stop").is_enabled()
    assert browser.button("New conversation")
    assert browser.role("log")


def test_a_reply_is_visible_before_it_ends(browser, page, ollama):
    ollama.behaviour = Behaviour(tokens=[f"w{i} " for i in range(30)], delay=0.08)
    type_message(browser, "count slowly")
    partial = browser.wait(
        lambda: (replies(browser) or [""])[0].strip(), 5, "first tokens"
    )
    assert not notes(browser), "the usage line came before the reply ended"
    final = wait_reply_done(browser)
    assert final.strip() == "".join(f"w{i} " for i in range(30)).strip()
    assert len(partial) < len(final)
    usage = notes(browser)[0]
    assert re.search(r"first token after \d+\.\d\d s", usage)
    assert "tokens/s" in usage and "reply tokens" in usage


def test_stop_keeps_the_partial_reply_and_closes_the_upstream(browser, page, ollama):
    ollama.behaviour = Behaviour(tokens=[f"t{i} " for i in range(60)], delay=0.1)
    type_message(browser, "a long one")
    browser.wait(lambda: "t2" in (replies(browser) or [""])[0], 5, "some tokens")
    browser.button("Stop").click()
    gone = ollama.wait_for_disconnect(3.0)
    assert gone is not None and gone.remaining > 0, "the fake never saw the close"
    kept = replies(browser)[0]
    time.sleep(0.5)
    assert replies(browser)[0] == kept and "t2" in kept and "t59" not in kept
    assert any("Stopped" in note for note in notes(browser))
    assert browser.button("Send").is_enabled()


def test_a_tool_agents_conversation_reopens_with_what_was_said_only(
    browser, start_server, ollama, tool_env
):
    """The calls and their results are stored, but the page shows the
    person's words and the agent's text, live and reopened alike."""
    server = start_server(**tool_env)
    browser.open(server.url + "/")
    agents_loaded(browser)
    browser.js(
        "const s = document.getElementById('agent'); s.value = 'helper';"
        "s.dispatchEvent(new Event('change'));"
    )
    ollama.behaviour = Behaviour(
        script=[Step(calls=[{"name": "clock", "arguments": {}}]), Step(["It is noon."])]
    )
    type_message(browser, "what time is it?")
    assert wait_reply_done(browser) == "It is noon."
    browser.reload()
    agents_loaded(browser)
    browser.button("what time is it?").click()
    browser.wait(lambda: replies(browser) == ["It is noon."], 5, "reopened")
    browser.wait(
        lambda: browser.labelled("Agent").get_attribute("value") == "helper",
        5,
        "the conversation's agent",
    )


def test_a_reload_lists_the_conversation_and_reopens_it(browser, page, ollama):
    ollama.behaviour = Behaviour(tokens=["Noted", " the", " kitchen."])
    type_message(browser, "remember the kitchen")
    wait_reply_done(browser)
    browser.reload()
    agents_loaded(browser)
    assert replies(browser) == []
    browser.button("remember the kitchen").click()
    browser.wait(lambda: replies(browser) == ["Noted the kitchen."], 5, "reopened")
    said = browser.js(
        "return [...document.querySelectorAll('[role=log] .message.user .body')]"
        ".map(e => e.textContent)"
    )
    assert said == ["remember the kitchen"]
    # The next message continues it: the model sees the earlier turn.
    ollama.requests.clear()
    type_message(browser, "and now?")
    wait_reply_done(browser)  # reopened messages have no usage line
    contents = [m["content"] for m in ollama.requests[-1]["messages"]]
    assert "remember the kitchen" in contents and "Noted the kitchen." in contents
    # Deleting it forgets it on the server too.
    browser.button("Delete conversation: remember the kitchen").click()
    browser.wait(lambda: replies(browser) == [], 5, "transcript cleared")
    stored = browser.js("return localStorage.getItem('piagent.conversations')")
    assert "remember the kitchen" not in stored


def test_html_in_a_reply_is_shown_as_text_and_runs_nothing(browser, page, ollama):
    hostile = [
        '<img src=x onerror="window.pwned=1">',
        " and ",
        "<script>window.pwned=2</script>",
        " [click](javascript:window.pwned=3)",
    ]
    ollama.behaviour = Behaviour(tokens=hostile)
    type_message(browser, "say something nasty")
    text = wait_reply_done(browser)
    assert '<img src=x onerror="window.pwned=1">' in text
    assert "<script>window.pwned=2</script>" in text
    assert browser.js("return window.pwned === undefined")
    counts = browser.js(
        "const log = document.querySelector('[role=log]');"
        "return [log.querySelectorAll('img, script, iframe').length,"
        " log.querySelectorAll('a').length]"
    )
    assert counts == [0, 0]
    assert [e for e in browser.console_errors()] == []


def test_markdown_is_rendered_from_text_nodes(browser, page, ollama):
    reply = (
        "# Title\n\nSome **bold**, *italic* and `code`, a snake_case_name.\n\n"
        "- one\n- two\n\n1. first\n2. second\n\n"
        "```python\nprint('<b>hi</b>')\n```\n\n"
        "See [the docs](https://example.org/x) or [local](/agents)."
    )
    ollama.behaviour = Behaviour(
        tokens=[reply[i : i + 7] for i in range(0, len(reply), 7)]
    )
    type_message(browser, "show markdown")
    wait_reply_done(browser)
    shape = browser.js(
        "const b = document.querySelector('[role=log] .message.assistant .body');"
        "const a = b.querySelector('a');"
        "return {h: b.querySelector('h3').textContent,"
        " strong: b.querySelector('strong').textContent,"
        " em: [...b.querySelectorAll('em')].map(e => e.textContent),"
        " ul: b.querySelectorAll('ul > li').length,"
        " ol: b.querySelectorAll('ol > li').length,"
        " code: b.querySelector('pre code').textContent,"
        " links: b.querySelectorAll('a').length,"
        " href: a.getAttribute('href'), rel: a.getAttribute('rel'),"
        " target: a.getAttribute('target')}"
    )
    assert shape == {
        "h": "Title",
        "strong": "bold",
        "em": ["italic"],
        "ul": 2,
        "ol": 2,
        "code": "print('<b>hi</b>')",
        "links": 1,
        "href": "https://example.org/x",
        "rel": "noopener noreferrer",
        "target": "_blank",
    }


def test_a_key_is_asked_for_on_401_and_kept(browser, start_server, ollama):
    server = start_server(API_KEYS=KEY)
    browser.open(server.url + "/")
    key_box = browser.labelled("API key")
    browser.wait(key_box.is_displayed, 5, "key prompt")
    key_box.send_keys("wrong-key-0123456789")
    browser.button("Use key").click()
    browser.wait(
        lambda: "refused" in browser.xpath("//dialog").text, 5, "second prompt"
    )
    key_box = browser.labelled("API key")
    key_box.send_keys(KEY)
    browser.button("Use key").click()
    agents_loaded(browser)
    assert browser.js("return localStorage.getItem('piagent.apiKey')") == KEY
    type_message(browser, "hello with a key")
    assert wait_reply_done(browser).startswith("Bonjour")
    # Forget the key: the next call asks again.
    browser.button("Forget key").click()
    assert browser.js("return localStorage.getItem('piagent.apiKey')") is None
    browser.reload()
    browser.wait(browser.labelled("API key").is_displayed, 5, "prompt after forget")


def test_429_shows_a_live_countdown(browser, start_server, ollama):
    server = start_server(RATE_LIMIT_CHAT="1/minute")
    browser.open(server.url + "/")
    agents_loaded(browser)
    type_message(browser, "first")
    wait_reply_done(browser)
    type_message(browser, "second")
    first = browser.wait(
        lambda: re.search(r"Try again in (\d+) s", alert_text(browser)), 5, "429"
    )
    assert "rate limit" in alert_text(browser)
    time.sleep(2.2)
    later = re.search(r"Try again in (\d+) s", alert_text(browser))
    assert later and int(later[1]) < int(first[1])
    # The refused message is back in the box, to send again later.
    assert browser.labelled("Message").get_attribute("value") == "second"


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("status_500", "The model server is not answering"),
        ("hang", "The model took too long to answer"),
        ("status_503", "piagent is busy"),
    ],
)
def test_model_server_errors_are_said_in_words(browser, page, ollama, fault, words):
    ollama.behaviour = Behaviour(fault=fault)
    type_message(browser, "hello?")
    browser.wait(lambda: words in alert_text(browser), 8, words)
    assert replies(browser) == []
    if fault == "status_503":  # Retry-After: 5, counted down
        assert re.search(r"Try again in [1-5] s", alert_text(browser))


def test_sse_parsing_of_comments_crlf_and_split_reads(browser, page):
    events = browser.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "import('/static/js/api.js').then(({parseSSE}) => {"
        '  const text = \': ping\\r\\n\\r\\nevent: token\\r\\ndata: {"text":"a"}'
        "\\r\\n\\r\\nevent: done\\ndata: {}\\n\\nevent: tok';"
        "  const [found, rest] = parseSSE(text);"
        "  done([found, rest]);"
        "});"
    )
    assert events == [
        [{"event": "token", "data": '{"text":"a"}'}, {"event": "done", "data": "{}"}],
        "event: tok",
    ]


def test_a_long_reply_arrives_whole(browser, start_server, ollama):
    """2,000 tokens, rendered at most once an animation frame, none lost."""
    server = start_server(CTX_TOKENS="4096", MAX_TOKENS="2000")
    browser.open(server.url + "/")
    agents_loaded(browser)
    ollama.behaviour = Behaviour(tokens=[f"w{i} " for i in range(2000)], burst=True)
    type_message(browser, "a long reply")
    text = wait_reply_done(browser, timeout=20)
    assert text.split() == [f"w{i}" for i in range(2000)]


@pytest.mark.parametrize(
    ("fake_fetch", "words"),
    [
        # A 200 SSE stream that ends after a token, with no done or error event.
        (
            "() => Promise.resolve(new Response("
            '\'event: token\\ndata: {"text":"half a rep"}\\n\\n\','
            " {headers: {'Content-Type': 'text/event-stream',"
            " 'X-Conversation-Id': 'cut'}}))",
            "cut off before its end",
        ),
        ("() => Promise.reject(new TypeError('Failed to fetch'))", "Cannot reach"),
    ],
    ids=["stream-cut-off", "network-down"],
)
def test_a_broken_connection_is_said_in_words(browser, page, fake_fetch, words):
    browser.js(f"window.fetch = {fake_fetch};")
    type_message(browser, "hello?")
    browser.wait(lambda: words in alert_text(browser), 5, words)


def test_360_px_wide_has_no_horizontal_scroll(browser, page, ollama, screenshots):
    long_line = "x" * 300
    ollama.behaviour = Behaviour(
        tokens=[f"A long word: {long_line}\n\n```\n{long_line}\n```\n\n- a list item"]
    )
    browser.viewport(360)
    type_message(browser, "a wide reply " + "y" * 120)
    wait_reply_done(browser)
    widths = browser.js(
        "return [document.documentElement.scrollWidth,"
        " document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1] == 360
    # The conversation list folds behind a button; Escape folds it again.
    from selenium.webdriver.common.keys import Keys

    new = browser.button("New conversation")
    assert not new.is_displayed()
    toggle = browser.button("Conversations")
    toggle.click()
    browser.wait(new.is_displayed, 3, "list shown")
    assert toggle.get_attribute("aria-expanded") == "true"
    toggle.send_keys(Keys.ESCAPE)
    browser.wait(lambda: not new.is_displayed(), 3, "list folded")
    toggle.click()
    browser.wait(new.is_displayed, 3, "list shown again")
    new.click()
    browser.wait(lambda: replies(browser) == [], 3, "a new conversation")
    assert not new.is_displayed()


def test_screenshots(browser, page, ollama, screenshots):
    """Light and dark, phone and desktop: saved for the docs (and for a look)."""
    reply = (
        "Ask its health endpoint; a **200** means it is up:\n\n"
        "```sh\ncurl -s http://pi.local:8000/health\n```\n\n"
        "- `/ready` also checks *Ollama* and the models\n"
        "- the [README](https://example.org/piagent) has the rest\n"
    )
    ollama.behaviour = Behaviour(tokens=re.findall(r"\S+\s*", reply), delay=0.01)
    type_message(browser, "How do I check piagent is up?")
    wait_reply_done(browser)
    shots = []
    for scheme in ("light", "dark"):
        browser.color_scheme(scheme)
        browser.viewport(None)
        shots.append(browser.screenshot(f"chat-desktop-{scheme}", screenshots))
        browser.viewport(360)
        shots.append(browser.screenshot(f"chat-phone-{scheme}", screenshots))
    assert all(path.stat().st_size > 5000 for path in shots)
