"""Shared stores through the real server: several workers, and a killed master."""

import os
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.support.fake_ollama import Behaviour


@pytest.fixture(params=["sqlite", "redis"])
def shared_env(request, fake_ollama, tmp_path):
    env = {
        "OLLAMA_HOST": fake_ollama.url,
        "WORKERS": "2",
        "RATE_LIMIT_CHAT": "",
        "RATE_LIMIT_DEFAULT": "",
    }
    if request.param == "sqlite":
        env.update(
            MEMORY_BACKEND="sqlite", MEMORY_SQLITE_PATH=str(tmp_path / "m.sqlite3")
        )
    else:
        redis_url = request.getfixturevalue("redis_server").url
        env.update(MEMORY_BACKEND="redis", REDIS_URL=redis_url)
    return env


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def wait_gone(pids: list[int], timeout: float = 10.0) -> None:
    """Orphaned workers leave once they see their master is gone; else kill them."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)


def test_acknowledged_exchanges_survive_a_killed_master(launch, shared_env, ollama):
    server = launch(shared_env).wait_ready()
    cids = [f"durable-{uuid.uuid4().hex}" for _ in range(4)]
    acknowledged: dict[str, list[str]] = {}
    for n in range(12):
        cid = cids[n % 4]
        response = requests.post(
            server.url + "/chat",
            json={"message": f"m{n}", "conversation_id": cid},
            timeout=10,
        )
        if response.status_code == 200:
            acknowledged.setdefault(cid, []).append(f"m{n}")
    assert sum(map(len, acknowledged.values())) == 12
    workers = children(server.process.pid)
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(10)
    wait_gone(workers)

    again = launch(shared_env).wait_ready()
    for cid, sent in acknowledged.items():
        response = requests.get(f"{again.url}/conversations/{cid}", timeout=5)
        assert response.status_code == 200, response.text
        messages = response.json()["messages"]
        assert [m["content"] for m in messages if m["role"] == "user"] == sent


def test_workers_share_one_conversation_without_loss(launch, shared_env, ollama):
    # 50 at once on purpose: the generation queue would turn most away.
    env = dict(
        shared_env,
        MEMORY_MAX_TURNS="200",
        CTX_TOKENS="16384",
        MAX_CONCURRENT_GENERATIONS="50",
    )
    server = launch(env).wait_ready()
    ollama.behaviour = Behaviour(tokens=["ok"], delay=0.01)
    cid = f"busy-{uuid.uuid4().hex}"
    barrier = threading.Barrier(50)
    statuses = []

    def one(i: int) -> None:
        barrier.wait()
        response = requests.post(
            server.url + "/chat",
            json={"message": f"q{i}", "conversation_id": cid},
            timeout=30,
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 50
    messages = requests.get(f"{server.url}/conversations/{cid}", timeout=5).json()[
        "messages"
    ]
    assert len(messages) == 100
    pairs = list(zip(messages[::2], messages[1::2], strict=True))
    assert all(
        q["role"] == "user" and a == {"role": "assistant", "content": "ok"}
        for q, a in pairs
    )
    assert sorted(q["content"] for q, _ in pairs) == sorted(f"q{i}" for i in range(50))
