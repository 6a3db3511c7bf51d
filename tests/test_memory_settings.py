"""Choosing a memory backend: one setting, checked at start-up, and logged."""

from pathlib import Path

import pytest
import requests
from decouple import Config, RepositoryEnv

from piagent.settings import Settings, SettingsError
from tests.support.server import free_port


def from_file(tmp_path: Path, text: str) -> Settings:
    env = tmp_path / ".env"
    env.write_text(text)
    return Settings.from_env(Config(RepositoryEnv(str(env))))


def test_default_is_the_in_process_store():
    s = Settings()
    assert s.memory_backend == "memory"
    assert s.redis_url == "redis://127.0.0.1:6379/0" and s.redis_timeout == 1.0


def test_backend_settings_are_read(tmp_path):
    s = from_file(
        tmp_path,
        f"MEMORY_BACKEND=sqlite\nMEMORY_SQLITE_PATH={tmp_path}/m.db\n"
        "REDIS_URL=redis://pi.local:6380/2\nREDIS_TIMEOUT=0.5\n",
    )
    assert (s.memory_backend, s.memory_sqlite_path) == ("sqlite", f"{tmp_path}/m.db")
    assert (s.redis_url, s.redis_timeout) == ("redis://pi.local:6380/2", 0.5)


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("MEMORY_BACKEND=mongo", "MEMORY_BACKEND='mongo': expected memory, sqlite or"),
        ("REDIS_TIMEOUT=0", "REDIS_TIMEOUT=0.0: expected seconds > 0"),
        (
            "MEMORY_BACKEND=sqlite\nMEMORY_SQLITE_PATH=/no/such/dir/m.db",
            "MEMORY_SQLITE_PATH='/no/such/dir/m.db': expected a file path in an "
            "existing directory",
        ),
        (
            "MEMORY_BACKEND=redis\nREDIS_URL=http://127.0.0.1:6379",
            "REDIS_URL='http://127.0.0.1:6379': expected a URL such as redis://",
        ),
    ],
)
def test_bad_backend_values_are_one_line_errors(tmp_path, line, needle):
    with pytest.raises(SettingsError) as caught:
        from_file(tmp_path, line + "\n")
    assert str(caught.value).startswith(needle)
    assert "\n" not in str(caught.value)


def test_unusable_sqlite_file_stops_start_up_with_one_line(
    launch, fake_ollama, tmp_path
):
    (tmp_path / "m.db").write_text("not a database " * 100)
    server = launch(
        {
            "OLLAMA_HOST": fake_ollama.url,
            "MEMORY_BACKEND": "sqlite",
            "MEMORY_SQLITE_PATH": str(tmp_path / "m.db"),
        }
    )
    assert server.wait_exit() != 0
    lines = [line for line in server.log().splitlines() if line.startswith("piagent:")]
    assert len(lines) == 1
    assert lines[0].startswith("piagent: configuration error: MEMORY_SQLITE_PATH=")
    assert "Traceback" not in server.log()


LOGGED = {
    "memory": "conversation memory: in-process (lost on restart, one per worker)",
    "sqlite": "conversation memory: sqlite at ",
    "redis": "conversation memory: redis at 127.0.0.1:",
}


def test_start_up_logs_the_store_in_use(start_server, memory_env):
    server = start_server(**memory_env)
    server.wait_for_log(LOGGED[memory_env.get("MEMORY_BACKEND", "memory")])


def test_start_up_logs_when_memory_is_off(start_server):
    start_server(ENABLE_MEMORY="false").wait_for_log("conversation memory: off")


def test_several_workers_on_sqlite_share_memory_and_do_not_warn(
    launch, fake_ollama, tmp_path
):
    server = launch(
        {
            "OLLAMA_HOST": fake_ollama.url,
            "WORKERS": "2",
            "MEMORY_BACKEND": "sqlite",
            "MEMORY_SQLITE_PATH": str(tmp_path / "m.db"),
        }
    ).wait_ready()
    assert requests.get(server.url + "/health", timeout=5).status_code == 200
    server.wait_for_log("conversation memory: sqlite at")
    assert "in-process memory store" not in server.log()


def test_several_workers_in_process_warning_points_to_sqlite(launch, fake_ollama):
    server = launch({"OLLAMA_HOST": fake_ollama.url, "WORKERS": "2"}).wait_ready()
    server.wait_for_log("Use MEMORY_BACKEND=sqlite")


def test_starts_without_redis_and_warns_naming_it(launch, fake_ollama):
    port = free_port()
    server = launch(
        {
            "OLLAMA_HOST": fake_ollama.url,
            "MEMORY_BACKEND": "redis",
            "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        }
    ).wait_ready()
    server.wait_for_log(
        f"conversation memory is unavailable (redis at 127.0.0.1:{port} db 0"
    )
    server.wait_for_log("requests that need memory answer 503 until Redis is up")
    response = requests.post(server.url + "/chat", json={"message": "hi"}, timeout=10)
    assert response.status_code == 503
