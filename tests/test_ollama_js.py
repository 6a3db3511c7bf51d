"""/ollama with the `ollama` JavaScript package (from the npm registry) as caller.

`make test` installs the pinned package into .venv/node (see the Makefile);
without Node or the package the tests are skipped, and fail under CI, whose
.ci/run installs both. Nothing is downloaded while the tests run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.support.fake_ollama import DEFAULT_TOKENS
from tests.support.server import ROOT

MODULES = ROOT / ".venv" / "node" / "node_modules"
SCRIPT = ROOT / "tests" / "js" / "ollama_client.mjs"
KEY = "hallway-panel-0123456789abcdef"


def node_client() -> str | None:
    """Why the JavaScript client cannot run here, or None if it can."""
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs npm)"
    if not (MODULES / "ollama" / "package.json").is_file():
        return f"the ollama npm package is not in {MODULES} (run make test once)"
    return None


@pytest.fixture(scope="module", autouse=True)
def needs_node():
    missing = node_client()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; .ci/run and make test should have set it up")
        pytest.skip(missing)


def run(server, scenario: str, key: str = "") -> dict:
    finished = subprocess.run(
        ["node", str(SCRIPT), server.url + "/ollama", key, scenario],
        env={**os.environ, "NODE_PATH": str(MODULES)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(finished.stdout)


def test_the_js_client_lists_and_shows_the_agents(server, ollama):
    seen = run(server, "list")
    assert seen == {
        "ok": True,
        "models": ["general:latest"],
        "family": "qwen2",
        "capabilities": ["completion", "tools"],
    }


def test_the_js_client_reads_a_stream_to_its_done_line(server, ollama):
    seen = run(server, "stream")
    assert seen["ok"] and seen["text"] == "".join(DEFAULT_TOKENS)
    assert seen["done"] is True and seen["done_reason"] == "stop"
    assert seen["eval_count"] == len(DEFAULT_TOKENS)
    assert run(server, "whole") == {
        "ok": True,
        "text": "".join(DEFAULT_TOKENS),
        "done": True,
    }


def test_the_js_client_raises_on_a_stream_broken_mid_way(server, ollama):
    ollama.behaviour.fault = "drop"
    seen = run(server, "stream")
    assert seen["ok"] is False and "dropped the stream" in seen["message"]


def test_the_js_client_sees_401_for_a_wrong_key(start_server, ollama):
    guarded = start_server(API_KEYS=KEY)
    seen = run(guarded, "list", "wrong-key-0123456789abcdef")
    assert seen["ok"] is False and seen["status"] == 401
    assert run(guarded, "list", KEY)["ok"] is True
