"""Reading piagent's request log lines out of a test server's output."""

from __future__ import annotations

import json
from typing import Any


def request_line(server: Any, rid: str, timeout: float = 5.0) -> dict[str, Any]:
    """The JSON request log line of one request, found by its X-Request-Id."""
    needle = f'"request_id":"{rid}"'
    text = server.wait_for_log(needle, timeout)
    [line] = [
        line for line in text.splitlines() if line.startswith("{") and needle in line
    ]
    return json.loads(line)
