"""The README and .env.example name every setting, so none is undocumented."""

import re

import pytest

from piagent.settings import Settings, variable_fields
from tests.support.server import ROOT

SETTINGS = [f.name.upper() for f in variable_fields()]
ALIASES = [alias for f in variable_fields() for alias in f.metadata["aliases"]]
SERVER_SETTINGS = ["BIND", "WORKERS", "WORKER_CONNECTIONS", "GRACEFUL_TIMEOUT"]


PER_AGENT = ["OLLAMA_MODEL_<AGENT>", "OPENAI_MODEL_<AGENT>"]


@pytest.mark.parametrize("name", SETTINGS + SERVER_SETTINGS + PER_AGENT + ALIASES)
def test_readme_documents_setting(name):
    assert f"`{name}`" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", SETTINGS + SERVER_SETTINGS)
def test_env_example_lists_setting(name):
    lines = (ROOT / ".env.example").read_text().splitlines()
    assert any(line.lstrip("# ").startswith(name + "=") for line in lines)


def test_every_setting_has_help():
    from dataclasses import fields

    assert all(f.metadata.get("help") for f in fields(Settings))


def readme_env_blocks() -> list[str]:
    """The README's fenced `ini` blocks that stand for a .env file."""
    text = (ROOT / "README.md").read_text()
    blocks = [part.split("```", 1)[0] for part in text.split("```ini\n")[1:]]
    return [block for block in blocks if block.startswith("# .env")]


def settings_from_file(path) -> Settings:
    from decouple import Config, RepositoryEnv

    return Settings.from_env(Config(RepositoryEnv(str(path))))


def test_readme_env_examples_are_valid_settings(tmp_path):
    blocks = readme_env_blocks()
    assert blocks, "the README's Security section shows a .env"
    for number, block in enumerate(blocks):
        path = tmp_path / f"example{number}.env"
        path.write_text(block)
        settings_from_file(path)  # a bad value raises SettingsError, naming it
        names = re.findall(r"^([A-Z_]+)=", block, re.M)
        # decouple ignores names it is not asked for: a typo would pass unseen
        assert set(names) <= set(SETTINGS + SERVER_SETTINGS + ALIASES), names


def test_env_example_parses_to_the_defaults():
    """`cp .env.example .env` is a safe start: it changes nothing."""
    assert settings_from_file(ROOT / ".env.example") == Settings()
