"""/docs in a real browser: Swagger UI renders every operation of the document,
under the page's strict CSP, with no console error and nothing from elsewhere."""

from __future__ import annotations

from urllib.parse import urlsplit

import requests


def test_docs_render_every_operation_offline(browser, server, screenshots):
    document = requests.get(server.url + "/openapi.json", timeout=5).json()
    operations = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
    }
    browser.open(server.url + "/docs")
    reference = browser.labelled("API reference")
    browser.wait(
        lambda: (
            len(reference.find_elements("css selector", ".opblock")) == len(operations)
        ),
        10,
        "every operation rendered",
    )
    shown = browser.js(
        "return [...document.querySelectorAll('.opblock')].map(b => "
        "[b.querySelector('.opblock-summary-method').textContent,"
        " b.querySelector('.opblock-summary-path').dataset.path])"
    )
    assert {tuple(pair) for pair in shown} == operations
    # Open /chat: its request schema shows the configured agents.
    browser.xpath("//*[@data-path='/chat']").click()
    browser.wait(lambda: "general" in reference.text, 5, "/chat expanded")
    console, urls = browser.logs()
    assert [e for e in console if e["level"] in ("SEVERE", "WARNING")] == []
    origin = urlsplit(server.url).netloc
    off_host = [
        url
        for url in urls
        if not url.startswith("data:") and urlsplit(url).netloc != origin
    ]
    assert urls and off_host == []
    browser.screenshot("api-docs", screenshots)
