"""MEMORY_TRIM_TO: read, checked against MEMORY_MAX_TURNS, and handed to the store."""

from pathlib import Path

import pytest
from decouple import Config, RepositoryEnv

from piagent.memory import build_memory
from piagent.settings import Settings, SettingsError


def from_file(tmp_path: Path, text: str) -> Settings:
    env = tmp_path / ".env"
    env.write_text(text)
    return Settings.from_env(Config(RepositoryEnv(str(env))))


def test_default_leaves_room_below_the_default_max_turns():
    s = Settings()
    assert 0 <= s.memory_trim_to < s.memory_max_turns


def test_value_is_read(tmp_path):
    s = from_file(tmp_path, "MEMORY_MAX_TURNS=20\nMEMORY_TRIM_TO=6\n")
    assert (s.memory_max_turns, s.memory_trim_to) == (20, 6)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "MEMORY_TRIM_TO=8",
            "MEMORY_TRIM_TO=8: expected an integer from 0 to MEMORY_MAX_TURNS-1 (7)",
        ),
        (
            "MEMORY_MAX_TURNS=4\nMEMORY_TRIM_TO=5",
            "MEMORY_TRIM_TO=5: expected an integer from 0 to MEMORY_MAX_TURNS-1 (3)",
        ),
        ("MEMORY_TRIM_TO=-2", "MEMORY_TRIM_TO=-2: expected an integer >= 0"),
        ("MEMORY_TRIM_TO=two", "MEMORY_TRIM_TO='two': expected an integer"),
        (
            "MEMORY_MAX_TURNS=0\nMEMORY_TRIM_TO=-1",
            "MEMORY_TRIM_TO=-1: expected an integer >= 0",
        ),
    ],
)
def test_bad_values_are_one_line_errors(tmp_path, text, needle):
    with pytest.raises(SettingsError) as caught:
        from_file(tmp_path, text + "\n")
    assert str(caught.value).startswith(needle)
    assert "\n" not in str(caught.value)


def test_max_turns_zero_keeps_no_history_whatever_trim_to_says(tmp_path):
    s = from_file(tmp_path, "MEMORY_MAX_TURNS=0\nMEMORY_TRIM_TO=4\n")
    store = build_memory(s)
    store.append_exchange("c", "q", "a")
    assert store.history("c") == [] and len(store) == 0


def test_the_store_cuts_to_the_setting(tmp_path):
    store = build_memory(Settings(memory_max_turns=6, memory_trim_to=2))
    for i in range(4):
        store.append_exchange("c", f"q{i}", f"a{i}")
    assert [m.content for m in store.history("c")] == ["q2", "a2", "q3", "a3"]


def test_bad_value_stops_start_up_with_one_line(launch, fake_ollama):
    server = launch(
        {
            "OLLAMA_HOST": fake_ollama.url,
            "MEMORY_MAX_TURNS": "4",
            "MEMORY_TRIM_TO": "4",
        }
    )
    assert server.wait_exit() != 0
    lines = [line for line in server.log().splitlines() if line.startswith("piagent:")]
    assert lines == [
        "piagent: configuration error: MEMORY_TRIM_TO=4: expected an integer from 0 "
        "to MEMORY_MAX_TURNS-1 (3)"
    ]
    assert "Traceback" not in server.log()
