"""Settings: defaults, parsing from an env file, and one-line errors for bad values."""

from pathlib import Path

import pytest
from decouple import Config, RepositoryEnv

from piagent.settings import Settings, SettingsError, parse_value


def from_file(tmp_path: Path, text: str) -> Settings:
    env = tmp_path / ".env"
    env.write_text(text)
    return Settings.from_env(Config(RepositoryEnv(str(env))))


def test_defaults_are_the_predecessors():
    s = Settings()
    assert (s.provider, s.ollama_host) == ("ollama", "http://127.0.0.1:11434")
    assert s.ollama_model_general == "qwen2.5:3b-instruct"
    assert (s.ctx_tokens, s.max_tokens, s.temperature) == (2048, 200, 0.7)
    assert s.enable_memory is True
    assert (s.memory_max_turns, s.memory_ttl_min, s.memory_max_conversations) == (
        8,
        60,
        500,
    )
    assert s.max_body_bytes == 65536


def test_env_file_values_are_parsed_to_their_types(tmp_path):
    s = from_file(
        tmp_path,
        "TEMPERATURE=0.2\nCTX_TOKENS=4096\nENABLE_MEMORY=false\n"
        "OLLAMA_HOST=http://pi.local:11434\nOLLAMA_KEEP_ALIVE=-1\n"
        "OLLAMA_MODEL_CODER=qwen2.5-coder:1.5b\n",
    )
    assert s.temperature == 0.2 and s.ctx_tokens == 4096
    assert s.enable_memory is False
    assert s.ollama_host == "http://pi.local:11434"
    assert s.ollama_keep_alive == "-1"
    # Collected by prefix from the .env file; agents.py matches them to agents.
    assert dict(s.agent_models) == {"OLLAMA_MODEL_CODER": "qwen2.5-coder:1.5b"}


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("TEMPERATURE=hot", "TEMPERATURE='hot': expected a number"),
        ("TEMPERATURE=3", "TEMPERATURE=3.0: expected 0 to 2"),
        ("MEMORY_MAX_TURNS=-1", "MEMORY_MAX_TURNS=-1: expected an integer >= 0"),
        ("MEMORY_MAX_TURNS=eight", "MEMORY_MAX_TURNS='eight': expected an integer"),
        ("OLLAMA_HOST=not a url", "OLLAMA_HOST='not a url': expected an http(s) URL"),
        ("OLLAMA_HOST=ftp://x", "OLLAMA_HOST='ftp://x': expected an http(s) URL"),
        ("OLLAMA_HOST=http://x:99999", "OLLAMA_HOST='http://x:99999': expected a URL"),
        ("ENABLE_MEMORY=maybe", "ENABLE_MEMORY='maybe': expected true or false"),
        ("MAX_TOKENS=4096", "MAX_TOKENS=4096: expected an integer from 1 to"),
        ("OLLAMA_TIMEOUT=0", "OLLAMA_TIMEOUT=0.0: expected seconds > 0"),
        ("MODEL_TIMEOUT=-1", "MODEL_TIMEOUT=-1.0: expected seconds > 0"),
        ("OLLAMA_TIMEOUT=nan", "OLLAMA_TIMEOUT='nan': expected a finite number"),
        ("OLLAMA_KEEP_ALIVE=soon", "OLLAMA_KEEP_ALIVE='soon': expected seconds or"),
        ("PROVIDER=llama", "PROVIDER='llama': expected one of"),
        (
            "OPENAI_BASE_URL=localhost:8080",
            "OPENAI_BASE_URL='localhost:8080': expected",
        ),
        (
            "OPENAI_BASE_URL=http://x:0x",
            "OPENAI_BASE_URL='http://x:0x': expected a URL",
        ),
        ("OPENAI_MODEL_GENERAL= ", "OPENAI_MODEL_GENERAL='': expected a model name"),
        ("STREAM_PRIME_SECONDS=-1", "STREAM_PRIME_SECONDS=-1.0: expected seconds >= 0"),
        ("STREAM_PING_SECONDS=0", "STREAM_PING_SECONDS=0.0: expected seconds > 0"),
        ("MAX_BODY_BYTES=10", "MAX_BODY_BYTES=10: expected bytes >= 1024"),
        ("LOG_LEVEL=loud", "LOG_LEVEL='loud': expected debug, info"),
    ],
)
def test_bad_value_names_variable_value_and_expectation(tmp_path, line, needle):
    with pytest.raises(SettingsError) as caught:
        from_file(tmp_path, line + "\n")
    message = str(caught.value)
    assert needle in message
    assert "\n" not in message


def test_settings_are_immutable():
    s = Settings()
    with pytest.raises(AttributeError):
        s.temperature = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.agent_models["x"] = "y"  # type: ignore[index]


def test_provider_openai_reads_its_own_model_variables(tmp_path):
    s = from_file(
        tmp_path,
        "PROVIDER=openai\nOPENAI_BASE_URL=http://127.0.0.1:1234/v1\n"
        "OPENAI_API_KEY=sk-secret\nOPENAI_MODEL_GENERAL=qwen2.5-3b-instruct\n"
        "OPENAI_MODEL_CODER=qwen2.5-coder-1.5b\nOLLAMA_MODEL_CODER=ignored:1b\n",
    )
    assert (s.provider, s.openai_base_url) == ("openai", "http://127.0.0.1:1234/v1")
    assert s.general_model == "qwen2.5-3b-instruct"
    assert dict(s.agent_models) == {"OPENAI_MODEL_CODER": "qwen2.5-coder-1.5b"}
    assert "sk-secret" not in repr(s)


def test_per_agent_models_are_also_collected_from_the_environment(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("OLLAMA_MODEL_PIRATE", " tiny:1b ")
    monkeypatch.setenv("OLLAMA_MODEL_EMPTY", "")
    s = from_file(tmp_path, "OLLAMA_MODEL_CODER=qwen2.5-coder:1.5b\n")
    assert dict(s.agent_models) == {
        "OLLAMA_MODEL_CODER": "qwen2.5-coder:1.5b",
        "OLLAMA_MODEL_PIRATE": "tiny:1b",
    }


@pytest.mark.parametrize(
    ("text", "timeouts"),
    [
        ("MODEL_TIMEOUT=20\nMODEL_CONNECT_TIMEOUT=2\n", (20.0, 2.0)),
        ("OLLAMA_TIMEOUT=20\nOLLAMA_CONNECT_TIMEOUT=2\n", (20.0, 2.0)),
        ("MODEL_TIMEOUT=20\nOLLAMA_TIMEOUT=20.0\n", (20.0, 3.0)),
        ("", (300.0, 3.0)),
    ],
    ids=["new-names", "older-names", "both-agreeing", "defaults"],
)
def test_model_timeouts_keep_their_older_ollama_names(tmp_path, text, timeouts):
    s = from_file(tmp_path, text)
    assert (s.model_timeout, s.model_connect_timeout) == timeouts


def test_a_timeout_set_twice_to_different_values_stops_start_up(tmp_path):
    with pytest.raises(SettingsError) as caught:
        from_file(tmp_path, "MODEL_TIMEOUT=20\nOLLAMA_TIMEOUT=30\n")
    assert str(caught.value) == (
        "MODEL_TIMEOUT='20' and OLLAMA_TIMEOUT='30': expected one of them "
        "(OLLAMA_TIMEOUT is the older name of MODEL_TIMEOUT)"
    )


@pytest.mark.parametrize(
    ("raw", "kind", "value"),
    [
        ("2.5", float, 2.5),
        ("2.5", float | None, 2.5),
        ("", float | None, None),
        (" 7 ", int | None, 7),
        ("on", bool, True),
        (" text ", str, "text"),
    ],
)
def test_values_parse_by_the_fields_real_type(raw, kind, value):
    assert parse_value("X", raw, kind) == value


def test_an_optional_number_is_still_checked_as_a_number():
    with pytest.raises(SettingsError, match="^X='soon': expected a number$"):
        parse_value("X", "soon", float | None)
