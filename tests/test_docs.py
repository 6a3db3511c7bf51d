"""The README and .env.example name every setting, so none is undocumented."""

from dataclasses import fields

import pytest

from piagent.settings import Settings
from tests.server import ROOT

SETTINGS = [f.name.upper() for f in fields(Settings) if f.name != "agent_models"]
SERVER_SETTINGS = ["BIND", "WORKERS", "WORKER_CONNECTIONS", "GRACEFUL_TIMEOUT"]


PER_AGENT = ["OLLAMA_MODEL_<AGENT>", "OPENAI_MODEL_<AGENT>"]


@pytest.mark.parametrize("name", SETTINGS + SERVER_SETTINGS + PER_AGENT)
def test_readme_documents_setting(name):
    assert f"`{name}`" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", SETTINGS + SERVER_SETTINGS)
def test_env_example_lists_setting(name):
    lines = (ROOT / ".env.example").read_text().splitlines()
    assert any(line.lstrip("# ").startswith(name + "=") for line in lines)


def test_every_setting_has_help():
    assert all(f.metadata.get("help") for f in fields(Settings))
