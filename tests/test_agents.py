"""Agents: prompt files, overrides from AGENTS_DIR, model precedence, safe names."""

import pytest

from piagent.agents import agent_model_variable, is_agent_name, load_agents
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


def test_model_precedence_file_then_variable_then_general(tmp_path):
    (tmp_path / "a.md").write_text("---\nmodel: from-file\n---\nA.")
    (tmp_path / "b.md").write_text("B.")
    (tmp_path / "c.md").write_text("C.")
    settings = Settings(
        agents_dir=str(tmp_path),
        ollama_model_general="general-model",
        agent_models={"OLLAMA_MODEL_A": "from-env", "OLLAMA_MODEL_B": "from-env"},
    )
    agents = load_agents(settings)
    assert agents["a"].model == "from-file"
    assert agents["b"].model == "from-env"
    assert agents["c"].model == "general-model"


def test_a_model_variable_naming_no_agent_is_warned_about(tmp_path, caplog):
    (tmp_path / "home-assistant.md").write_text("Turn lights on.")
    settings = Settings(
        agents_dir=str(tmp_path),
        agent_models={
            "OLLAMA_MODEL_HOME_ASSISTANT": "tiny:1b",
            "OLLAMA_MODEL_HOME_ASISTANT": "typo:1b",
        },
    )
    with caplog.at_level("WARNING", logger="piagent"):
        agents = load_agents(settings)
    assert agents["home-assistant"].model == "tiny:1b"
    [record] = caplog.records
    assert record.getMessage() == (
        "OLLAMA_MODEL_HOME_ASISTANT is set but names no agent (agents: general, "
        "home-assistant); it is ignored"
    )


def test_agent_model_variable_is_shell_safe():
    assert agent_model_variable("home-assistant") == "OLLAMA_MODEL_HOME_ASSISTANT"
    assert agent_model_variable("home-assistant", "openai") == (
        "OPENAI_MODEL_HOME_ASSISTANT"
    )


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
