"""Agents: prompt files, overrides from AGENTS_DIR, model precedence, safe names."""

import pytest

from piagent.agents import discover_agent_names, is_agent_name, load_agents
from piagent.settings import Settings, SettingsError


def test_general_ships_in_the_package():
    agents = load_agents(Settings())
    assert list(agents) == ["general"]
    assert agents["general"].model == "qwen2.5:3b-instruct"
    assert agents["general"].system_prompt


def test_user_directory_adds_and_overrides(tmp_path):
    (tmp_path / "general.md").write_text("You are terse.\n")
    (tmp_path / "coder.md").write_text("---\nmodel: qwen2.5-coder:1.5b\n---\nCode.\n")
    (tmp_path / "Bad Name.md").write_text("ignored")
    (tmp_path / "notes.txt").write_text("ignored")
    agents = load_agents(Settings(agents_dir=str(tmp_path)))
    assert sorted(agents) == ["coder", "general"]
    assert agents["general"].system_prompt == "You are terse."
    assert agents["coder"].model == "qwen2.5-coder:1.5b"
    assert agents["coder"].system_prompt == "Code."
    assert discover_agent_names(str(tmp_path)) == ["coder", "general"]


def test_model_precedence_file_then_variable_then_general(tmp_path):
    (tmp_path / "a.md").write_text("---\nmodel: from-file\n---\nA.")
    (tmp_path / "b.md").write_text("B.")
    (tmp_path / "c.md").write_text("C.")
    settings = Settings(
        agents_dir=str(tmp_path),
        ollama_model_general="general-model",
        agent_models={"a": "from-env", "b": "from-env"},
    )
    agents = load_agents(settings)
    assert agents["a"].model == "from-file"
    assert agents["b"].model == "from-env"
    assert agents["c"].model == "general-model"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("---\nmodel: x\nPrompt", "never closed"),
        ("---\ncolour: red\n---\nPrompt", "expected one of model"),
        ("   \n", "empty"),
    ],
)
def test_broken_agent_file_stops_start_up_naming_the_file(tmp_path, text, needle):
    (tmp_path / "broken.md").write_text(text)
    with pytest.raises(SettingsError, match=needle) as caught:
        load_agents(Settings(agents_dir=str(tmp_path)))
    assert "broken.md" in str(caught.value)


def test_missing_agents_dir_is_a_settings_error(tmp_path):
    with pytest.raises(SettingsError, match="AGENTS_DIR=.*expected a directory"):
        load_agents(Settings(agents_dir=str(tmp_path / "nope")))


@pytest.mark.parametrize(
    "name", ["../x", "x/../y", "", "A", ".hidden", "a b", "a\n", "-x", "x" * 65]
)
def test_unsafe_agent_names_are_refused(name):
    assert not is_agent_name(name)


@pytest.mark.parametrize("name", ["general", "home-assistant", "coder_2", "7"])
def test_safe_agent_names_are_accepted(name):
    assert is_agent_name(name)
