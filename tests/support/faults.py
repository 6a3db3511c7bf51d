"""Faults before the first token, shared by the tests of both providers."""

from __future__ import annotations

import requests

# (fault of the fake model server, status piagent answers, words of its detail)
BEFORE_FIRST_TOKEN = [
    ("status_500", 502, "llama runner process has terminated"),
    ("status_503", 503, "busy"),
    ("error_first", 502, "boom"),
    ("drop_before", 502, "closed the connection"),
    ("hang", 504, "OLLAMA_TIMEOUT"),
]


def assert_real_status(response: requests.Response, status: int, needle: str) -> None:
    """A failure before any text: its own status in a JSON error, never a 200."""
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert needle in response.json()["detail"]
    assert response.headers["X-Conversation-Id"]
    if status == 503:
        assert int(response.headers["Retry-After"]) > 0
