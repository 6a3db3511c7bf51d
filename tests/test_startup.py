"""Starting the real server: bad settings, a missing Ollama, .env, worker warnings."""

import socket

import pytest
import requests

from tests.support.server import ROOT


def unused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TEMPERATURE", "hot", "TEMPERATURE='hot': expected a number"),
        ("MEMORY_MAX_TURNS", "-1", "MEMORY_MAX_TURNS=-1: expected an integer >= 0"),
        (
            "OLLAMA_HOST",
            "not a url",
            "OLLAMA_HOST='not a url': expected an http(s) URL such as "
            "http://127.0.0.1:11434",
        ),
        (
            "AGENTS_DIR",
            "/nonexistent/agents",
            "AGENTS_DIR='/nonexistent/agents': expected a directory",
        ),
    ],
)
def test_bad_setting_stops_start_up_with_one_clear_line(
    launch, variable, value, expected
):
    server = launch({variable: value})
    assert server.wait_exit() != 0
    log = server.log()
    lines = [line for line in log.splitlines() if line.startswith("piagent:")]
    assert lines == [f"piagent: configuration error: {expected}"]
    assert "Traceback" not in log


def test_starts_without_ollama_and_warns_naming_the_host(launch):
    host = unused_url()
    server = launch({"OLLAMA_HOST": host}).wait_ready()
    log = server.wait_for_log(f"Ollama unreachable at {host}")
    assert log.count(f"Ollama unreachable at {host}") == 1
    response = requests.post(server.url + "/chat", json={"message": "hi"}, timeout=10)
    assert response.status_code == 502
    assert "ollama serve" in response.json()["detail"]


def test_warns_at_start_up_when_a_model_is_not_pulled(launch, fake_ollama):
    server = launch(
        {"OLLAMA_HOST": fake_ollama.url, "OLLAMA_MODEL_GENERAL": "absent:7b"}
    ).wait_ready()
    server.wait_for_log("run `ollama pull absent:7b`")


def test_env_file_in_the_working_directory_is_read(launch, fake_ollama, tmp_path):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    (tmp_path / ".env").write_text(
        f"BIND=127.0.0.1:{port}\nOLLAMA_HOST={fake_ollama.url}\nMAX_TOKENS=42\n"
    )
    server = launch({}, workdir=tmp_path, bind=False)
    assert server.port == port
    server.wait_ready()
    fake_ollama.reset()
    requests.post(server.url + "/chat", json={"message": "hi"}, timeout=10)
    assert fake_ollama.requests[-1]["options"]["num_predict"] == 42


def test_several_workers_with_in_process_memory_log_a_warning(launch, fake_ollama):
    server = launch({"OLLAMA_HOST": fake_ollama.url, "WORKERS": "2"}).wait_ready()
    server.wait_for_log("WORKERS=2 with the in-process memory store")


def test_gunicorn_config_is_valid():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--check-config", "-c", "gunicorn.conf.py"]
        + ["wsgi:app"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_workers_given_on_the_command_line_also_warn(launch, fake_ollama):
    server = launch(
        {"OLLAMA_HOST": fake_ollama.url, "GUNICORN_CMD_ARGS": "--workers 2"}
    ).wait_ready()
    server.wait_for_log("WORKERS=2 with the in-process memory store")


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("WORKERS", "abc", "an integer >= 1"),
        ("WORKERS", "0", "an integer >= 1"),
        ("WORKER_CONNECTIONS", "many", "an integer >= 1"),
        ("GRACEFUL_TIMEOUT", "x", "an integer >= 0"),
    ],
)
def test_bad_gunicorn_settings_stop_start_up_in_one_line(
    launch, fake_ollama, variable, value, expected
):
    server = launch({"OLLAMA_HOST": fake_ollama.url, variable: value})
    assert server.wait_exit() != 0
    log = server.log()
    assert log.strip() == (
        f"piagent: configuration error: {variable}={value!r}: expected {expected}"
    )
