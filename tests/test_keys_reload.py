"""`systemctl reload piagent`: gunicorn started as the unit starts it, the
reload signal sent as the unit's ExecReload sends it, while a stream is open.
The keys file is read again; nothing else changes: the stream finishes, the
in-process conversations stay."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from piagent.keys import digest_of
from tests.support.fake_ollama import Behaviour
from tests.support.server import ROOT, Server
from tests.test_deploy import INSTALLED_GUNICORN, exec_start, unit_directives
from tests.test_keytool import keys_tool

ALICE = "alice-phone-0123456789abcdef"
BOB = "bob-tablet-fedcba9876543210"
CAROL = "carol-laptop-00112233445566"
# A stream that outlasts the grace period gunicorn gives old workers on its
# own reload (GRACEFUL_TIMEOUT, 1 s here): it survives only if the worker stays.
TOKENS = [f"w{i} " for i in range(12)]
DELAY = 0.25


def unit_command(state: Path) -> list[str]:
    """ExecStart as written, with this checkout for /opt/piagent/app, this
    Python's gunicorn for the venv's, and a temp directory for the state."""
    command = [
        arg.replace("/opt/piagent/app", str(ROOT)).replace(
            "/var/lib/piagent", str(state)
        )
        for arg in exec_start()
    ]
    assert command[0] == INSTALLED_GUNICORN
    return [sys.executable, "-m", "gunicorn", *command[1:]]


def reload_as_the_unit_does(server: Server) -> None:
    """ExecReload with $MAINPID, as systemd runs it for `systemctl reload`."""
    [command] = unit_directives()["ExecReload"]
    argv = shlex.split(command.replace("$MAINPID", str(server.process.pid)))
    subprocess.run(argv, check=True, timeout=10)


def workers(server: Server) -> list[int]:
    pid = server.process.pid
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return sorted(int(child) for child in text.split())


def keys_file(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.fixture
def unit(tmp_path, fake_ollama):
    """gunicorn as deploy/piagent.service starts it, with a keys file."""
    state = tmp_path / "state"
    state.mkdir()
    keys = keys_file(tmp_path / "keys", f"alice {ALICE}\nbob {BOB}\n")
    env = {
        "OLLAMA_HOST": fake_ollama.url,
        "API_KEYS_FILE": str(keys),
        "GRACEFUL_TIMEOUT": "1",
        "RATE_LIMIT_CHAT": "",
        "RATE_LIMIT_DEFAULT": "",
    }
    server = Server(state, env, command=unit_command(state))
    yield server, keys
    server.stop()


def as_(key):
    return {"X-API-Key": key}


def open_stream(server, key, cid):
    response = requests.post(
        server.url + "/chat",
        json={"message": "count", "stream": True, "conversation_id": cid},
        headers=as_(key),
        stream=True,
        timeout=20,
    )
    assert response.status_code == 200
    chunks = response.iter_content(chunk_size=None)
    return chunks, next(chunks)


def test_a_reload_swaps_keys_and_keeps_streams_and_memory(unit, ollama):
    server, keys = unit
    server.wait_ready()
    booted = workers(server)
    remembered = f"kitchen-{uuid.uuid4().hex[:8]}"
    requests.post(
        server.url + "/chat",
        json={"message": "remember 42", "conversation_id": remembered},
        headers=as_(ALICE),
        timeout=10,
    ).raise_for_status()
    ollama.behaviour = Behaviour(tokens=TOKENS, delay=DELAY)
    chunks, first = open_stream(server, ALICE, f"stream-{uuid.uuid4().hex[:8]}")
    keys_file(keys, f"alice {ALICE}\ncarol {CAROL}\n")  # bob out, carol in
    reload_as_the_unit_does(server)
    server.wait_for_log("API keys reloaded: 2 API key(s) of 2 owner(s)")
    assert requests.get(server.url + "/agents", headers=as_(CAROL), timeout=5).ok
    revoked = requests.get(server.url + "/agents", headers=as_(BOB), timeout=5)
    assert revoked.status_code == 401
    # The stream outlives GRACEFUL_TIMEOUT and still ends whole.
    assert (first + b"".join(chunks)).decode() == "".join(TOKENS)
    assert workers(server) == booted
    kept = requests.get(
        server.url + f"/conversations/{remembered}", headers=as_(ALICE), timeout=5
    )
    assert kept.status_code == 200
    assert kept.json()["messages"][0]["content"] == "remember 42"
    log = server.log()
    for key in (ALICE, BOB, CAROL):
        assert key not in log and digest_of(key).hex() not in log


def test_the_key_tool_round_trip_with_a_running_server(unit, ollama):
    """add, use the printed key, list, revoke; the revoked key gets 401 after
    the reload, and the other owner's keys keep working."""
    server, keys = unit
    server.wait_ready()
    tool = {"API_KEYS_FILE": str(keys)}
    erin = keys_tool(keys.parent, "keys", "add", "erin", **tool)
    assert erin.returncode == 0, erin.stderr
    erin_key = erin.stdout.strip()
    refused = requests.get(server.url + "/agents", headers=as_(erin_key), timeout=5)
    assert refused.status_code == 401  # not before a reload
    reload_as_the_unit_does(server)
    server.wait_for_log("API keys reloaded: 3 API key(s) of 3 owner(s)")
    cid = f"erin-{uuid.uuid4().hex[:8]}"
    chat = requests.post(
        server.url + "/chat",
        json={"message": "hi", "conversation_id": cid},
        headers=as_(erin_key),
        timeout=10,
    )
    assert chat.status_code == 200
    listed = keys_tool(keys.parent, "keys", "list", **tool).stdout.split("\n")
    assert [row.split()[:2] for row in listed if row] == [
        ["alice", "1"],
        ["bob", "1"],
        ["erin", "1"],
    ]
    assert keys_tool(keys.parent, "keys", "revoke", "erin", **tool).returncode == 0
    reload_as_the_unit_does(server)
    deadline = time.monotonic() + 5
    while server.log().count("API keys reloaded") < 2:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    gone = requests.get(server.url + "/agents", headers=as_(erin_key), timeout=5)
    assert gone.status_code == 401
    assert requests.get(server.url + "/agents", headers=as_(BOB), timeout=5).ok
    assert erin_key not in server.log()


def test_a_reload_that_finds_a_bad_file_keeps_the_keys_and_logs_why(unit, ollama):
    server, keys = unit
    server.wait_ready()
    keys_file(keys, f"alice {ALICE}\ncarol sha256:{'0' * 63}\n")
    reload_as_the_unit_does(server)
    log = server.wait_for_log("API keys not reloaded")
    assert (
        "API keys not reloaded, still using the 2 API key(s) of 2 owner(s): "
        f"API_KEYS_FILE={str(keys)!r}: line 2: expected sha256: and 64 hex digits"
    ) in log
    for key in (ALICE, BOB):
        ok = requests.get(server.url + "/agents", headers=as_(key), timeout=5)
        assert ok.status_code == 200
    assert ALICE not in server.log()


def test_every_worker_reloads(tmp_path, fake_ollama, ollama):
    state = tmp_path / "state"
    state.mkdir()
    keys = keys_file(tmp_path / "keys", f"alice {ALICE}\n")
    env = {
        "OLLAMA_HOST": fake_ollama.url,
        "API_KEYS_FILE": str(keys),
        "WORKERS": "2",
        "MEMORY_BACKEND": "sqlite",
        "MEMORY_SQLITE_PATH": str(tmp_path / "memory.sqlite3"),
        "RATE_LIMIT_DEFAULT": "",
    }
    server = Server(state, env, command=unit_command(state))
    try:
        server.wait_ready()
        deadline = time.monotonic() + 10
        while len(workers(server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        keys_file(keys, f"carol {CAROL}\n")
        reload_as_the_unit_does(server)
        deadline = time.monotonic() + 5
        while server.log().count("API keys reloaded") < 2:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        statuses = {
            requests.get(
                server.url + "/agents", headers=as_(CAROL), timeout=5
            ).status_code
            for _ in range(10)
        }
        assert statuses == {200}
    finally:
        server.stop()


def test_a_reload_while_a_worker_boots_does_not_kill_it(unit, ollama):
    """A worker resets SIGHUP to its default, exit, while it boots; piagent's
    handler is installed with gunicorn's other worker signals, before the
    app loads, and a reload asked for then happens once it has loaded."""
    server, keys = unit
    deadline = time.monotonic() + 20
    while not workers(server):
        assert time.monotonic() < deadline and server.process.poll() is None
        time.sleep(0.005)
    [booting] = workers(server)
    keys_file(keys, f"carol {CAROL}\n")
    # Reload after reload until the app has loaded: some land while it loads.
    while "guards: " not in server.log():
        assert time.monotonic() < deadline, server.log()
        reload_as_the_unit_does(server)
        time.sleep(0.02)
    server.wait_ready()
    assert workers(server) == [booting]
    assert "was sent SIGHUP" not in server.log()
    assert requests.get(server.url + "/agents", headers=as_(CAROL), timeout=5).ok
    refused = requests.get(server.url + "/agents", headers=as_(ALICE), timeout=5)
    assert refused.status_code == 401


def test_gunicorns_own_reload_would_lose_the_in_process_memory(unit, ollama):
    """The control: SIGHUP to the master, as `kill -HUP $MAINPID` did, makes
    gunicorn replace its workers, and the in-process store goes with them."""
    server, _ = unit
    server.wait_ready()
    booted = workers(server)
    cid = f"lost-{uuid.uuid4().hex[:8]}"
    requests.post(
        server.url + "/chat",
        json={"message": "remember 42", "conversation_id": cid},
        headers=as_(ALICE),
        timeout=10,
    ).raise_for_status()
    server.process.send_signal(1)  # SIGHUP
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = workers(server)
        if now and not set(now) & set(booted):
            break  # the new worker is up, the old one gone
        time.sleep(0.05)
    assert workers(server) and not set(workers(server)) & set(booted)
    server.wait_ready()
    gone = requests.get(
        server.url + f"/conversations/{cid}", headers=as_(ALICE), timeout=5
    )
    assert gone.status_code == 404


def test_a_hangup_while_the_app_loads_reloads_it_once_loaded():
    """SIGHUP can come before the worker has its app (the keys file may have
    been read before the change): the reload waits for the app, then runs."""
    import runpy

    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    reloads: list[int] = []

    class App:
        extensions = {"piagent.reload": lambda: reloads.append(1)}

    class Loading:
        wsgi = None

        def load_wsgi(self) -> None:
            self.wsgi = App()

    class Worker(config["ReloadsOnHangup"], Loading):
        pass

    worker = Worker()
    worker.reload_app()  # the hangup's greenlet, while the app still loads
    assert reloads == []
    worker.load_wsgi()
    assert reloads == [1]
    worker.reload_app()  # loaded: at once
    assert reloads == [1, 1]
