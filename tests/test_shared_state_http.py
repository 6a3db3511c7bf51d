"""STATE_BACKEND=redis through the real gunicorn and a real redis-server: two
instances (or two workers) share one generation slot and one rate limit; a
killed worker's slot comes back within its lease; clients that leave free
their place at once; Redis stopped and started again. No slot is left held
at the end of any test."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
import redis
import requests

from tests.support.fake_ollama import Behaviour, FakeOllama
from tests.support.redis_server import RedisServer, redis_available
from tests.support.server import Server

KEY = "shared-state-key-0123456789"
LEASE = "1"


@pytest.fixture
def fresh_redis(tmp_path_factory) -> Iterator[RedisServer]:
    if not redis_available():
        pytest.fail("redis-server is missing; .ci/run installs it")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


def held(url: str) -> tuple[int, int]:
    """(slots held on every host, tickets in the line) in Redis now."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        holders = sum(
            client.zcard(key) for key in client.scan_iter("piagent:slots:holders:*")
        )
        return holders, client.zcard("piagent:slots:line")
    finally:
        client.close()


def assert_nothing_held(url: str, within: float = 0.5) -> None:
    """Within half a lease: a slot given back, not one whose lease ran out."""
    deadline = time.monotonic() + within
    while held(url) != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert held(url) == (0, 0)


def settings(fake: FakeOllama, redis_url: str, **extra: str) -> dict[str, str]:
    env = {
        "OLLAMA_HOST": fake.url,
        "OLLAMA_TIMEOUT": "5",
        "STATE_BACKEND": "redis",
        "REDIS_URL": redis_url,
        "SLOT_LEASE_SECONDS": LEASE,
        "MAX_CONCURRENT_GENERATIONS": "1",
        "RATE_LIMIT_CHAT": "",
        "RATE_LIMIT_DEFAULT": "",
    }
    env.update(extra)
    return env


def start(launch, tmp_path_factory, env: dict[str, str]) -> Server:
    return launch(env, workdir=tmp_path_factory.mktemp("instance")).wait_ready()


def warm(server: Server) -> None:
    """The first slot of a fresh Redis waits one lease (see shared_slots)."""
    response = requests.post(server.url + "/chat", json={"message": "warm"}, timeout=20)
    assert response.status_code == 200, response.text


def crowd(servers: list[Server], count: int) -> list[requests.Response]:
    results: list[requests.Response] = [None] * count  # type: ignore[list-item]

    def one(index: int) -> None:
        server = servers[index % len(servers)]
        body = {"message": f"m{index}", "stream": True}
        results[index] = requests.post(server.url + "/chat", json=body, timeout=60)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    return results


def check_crowd(results: list[requests.Response], ollama: FakeOllama) -> None:
    reply = "".join(ollama.behaviour.tokens)
    served = [r for r in results if r.status_code == 200]
    refused = [r for r in results if r.status_code == 503]
    assert len(served) + len(refused) == len(results)
    assert len(served) >= 6  # one running and five waiting, at least
    assert all(r.text == reply for r in served)
    for response in refused:
        assert int(response.headers["Retry-After"]) >= 1
        assert "counted across every piagent process" in response.json()["detail"]
    assert ollama.max_generating == 1


def test_two_instances_never_run_two_generations_at_once(
    launch, tmp_path_factory, ollama, fresh_redis
):
    env = settings(ollama, fresh_redis.url, MAX_QUEUED_GENERATIONS="5")
    servers = [start(launch, tmp_path_factory, env) for _ in range(2)]
    warm(servers[0])
    ollama.behaviour = Behaviour(tokens=[f"t{i} " for i in range(5)], delay=0.1)
    check_crowd(crowd(servers, 20), ollama)
    assert_nothing_held(fresh_redis.url)


def test_two_workers_never_run_two_generations_at_once(
    launch, tmp_path_factory, ollama, fresh_redis
):
    env = settings(ollama, fresh_redis.url, MAX_QUEUED_GENERATIONS="5", WORKERS="2")
    server = start(launch, tmp_path_factory, env)
    warm(server)
    ollama.behaviour = Behaviour(tokens=[f"t{i} " for i in range(5)], delay=0.1)
    check_crowd(crowd([server], 20), ollama)
    assert_nothing_held(fresh_redis.url)
    assert "STATE_BACKEND=redis shares the limits and slots" in server.log()


def test_a_chat_rate_limit_holds_across_two_instances(
    launch, tmp_path_factory, ollama, fresh_redis
):
    env = settings(ollama, fresh_redis.url, API_KEYS=KEY, RATE_LIMIT_CHAT="3/minute")
    servers = [start(launch, tmp_path_factory, env) for _ in range(2)]
    statuses = [
        requests.post(
            servers[i % 2].url + "/chat",
            json={"message": f"r{i}"},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=20,
        )
        for i in range(4)
    ]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert int(statuses[3].headers["Retry-After"]) >= 1
    assert_nothing_held(fresh_redis.url)


def test_a_killed_workers_slot_is_free_within_its_lease(
    launch, tmp_path_factory, ollama, fresh_redis
):
    env = settings(ollama, fresh_redis.url)
    first, second = (start(launch, tmp_path_factory, env) for _ in range(2))
    warm(first)
    ollama.behaviour = Behaviour(tokens=[f"t{i} " for i in range(60)], delay=0.1)
    stream = requests.post(
        first.url + "/chat",
        json={"message": "long", "stream": True},
        stream=True,
        timeout=20,
    )
    chunks = stream.iter_content(None)  # kept: dropping it closes the connection
    assert next(chunks)  # generating on the first instance
    waiting: list[requests.Response] = []
    thread = threading.Thread(
        target=lambda: waiting.append(
            requests.post(second.url + "/chat", json={"message": "next"}, timeout=30)
        )
    )
    thread.start()
    deadline = time.monotonic() + 5
    while held(fresh_redis.url) != (1, 1) and time.monotonic() < deadline:
        time.sleep(0.02)  # in line behind it
    assert held(fresh_redis.url) == (1, 1), (waiting, second.log())
    [worker] = psutil.Process(first.process.pid).children()
    worker.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    assert ollama.wait_for_disconnect(5) is not None
    deadline = killed + float(LEASE) + 1.5
    while len(ollama.requests) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(ollama.requests) == 3, "the waiting request never got the slot"
    assert time.monotonic() - killed <= float(LEASE) + 1.5
    ollama.behaviour = Behaviour()
    thread.join(30)
    assert waiting[0].status_code == 200
    stream.close()
    assert_nothing_held(fresh_redis.url)


def raw_chat(server: Server, message: str) -> socket.socket:
    body = f'{{"message": "{message}"}}'
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(
        b"POST /chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
    )
    return sock


def test_clients_that_leave_free_their_place_at_once(
    launch, tmp_path_factory, ollama, fresh_redis
):
    env = settings(ollama, fresh_redis.url)
    first, second = (start(launch, tmp_path_factory, env) for _ in range(2))
    warm(first)
    ollama.behaviour = Behaviour(tokens=[f"t{i} " for i in range(300)], delay=0.1)
    stream = requests.post(
        first.url + "/chat",
        json={"message": "long", "stream": True},
        stream=True,
        timeout=20,
    )
    chunks = stream.iter_content(None)  # kept: dropping it closes the connection
    assert next(chunks)
    waiter = raw_chat(second, "waiting")
    deadline = time.monotonic() + 3
    while held(fresh_redis.url) != (1, 1) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert held(fresh_redis.url) == (1, 1)
    waiter.close()  # leaves the line: noticed within a poll
    left = time.monotonic()
    while held(fresh_redis.url)[1] and time.monotonic() < left + 3:
        time.sleep(0.02)
    assert held(fresh_redis.url) == (1, 0)
    assert time.monotonic() - left < 1.0
    stream.close()  # leaves mid-stream: noticed at the next token written
    left = time.monotonic()
    assert_nothing_held(fresh_redis.url)
    assert time.monotonic() - left < 1.0


def test_redis_down_refuses_generations_then_service_comes_back(
    launch, tmp_path_factory, ollama, fresh_redis
):
    env = settings(ollama, fresh_redis.url, API_KEYS=KEY, RATE_LIMIT_CHAT="30/minute")
    server = start(launch, tmp_path_factory, env)
    auth = {"Authorization": f"Bearer {KEY}"}
    fresh_redis.stop()
    body = {"message": "while down", "conversation_id": "while-down"}
    response = requests.post(server.url + "/chat", json=body, headers=auth, timeout=20)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "generation slots cannot be counted" in response.json()["detail"]
    assert len(ollama.requests) == 0  # never more generations than allowed
    gone = requests.get(
        server.url + "/conversations/while-down", headers=auth, timeout=10
    )
    assert gone.status_code == 404  # nothing recorded
    ready = requests.get(server.url + "/ready", headers=auth, timeout=10)
    assert ready.status_code == 503
    assert "generation slots cannot be counted (Redis at" in ready.json()["detail"]
    server.wait_for_log("falling back to in-memory storage")
    fresh_redis.start()  # empty, as after a crash: one lease before slots
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = requests.post(
            server.url + "/chat", json=body, headers=auth, timeout=20
        )
        if response.status_code == 200:
            break
        time.sleep(0.2)
    assert response.status_code == 200, response.text
    assert requests.get(server.url + "/ready", headers=auth, timeout=10).ok
    assert_nothing_held(fresh_redis.url)


def test_several_workers_with_local_state_are_warned_about(launch, ollama):
    server = launch(
        {"OLLAMA_HOST": ollama.url, "WORKERS": "2", "MEMORY_BACKEND": "sqlite"}
    ).wait_ready()
    server.wait_for_log("WORKERS=2 with STATE_BACKEND=local: rate limits and")


@pytest.mark.parametrize(
    ("behaviour", "stream", "status"),
    [
        (Behaviour(), False, 200),  # success
        (Behaviour(fault="status_500"), False, 502),  # failure before any text
        (Behaviour(fault="drop", fault_after=2), True, 200),  # failure mid-stream
        (Behaviour(tokens=["t "] * 40, delay=0.1), True, 200),  # the deadline
    ],
    ids=["success", "failure", "broken-stream", "deadline"],
)
def test_every_exit_path_gives_the_slot_back(
    launch, tmp_path_factory, ollama, fresh_redis, behaviour, stream, status
):
    env = settings(ollama, fresh_redis.url, MAX_GENERATION_SECONDS="1")
    server = start(launch, tmp_path_factory, env)
    warm(server)
    ollama.behaviour = behaviour
    with requests.post(
        server.url + "/chat",
        json={"message": "x", "stream": stream},
        stream=True,
        timeout=20,
    ) as response:
        assert response.status_code == status
        if stream:
            # Cut short (a dropped upstream, or the deadline): incomplete.
            with pytest.raises(requests.exceptions.ChunkedEncodingError):
                b"".join(response.iter_content(None))
    assert_nothing_held(fresh_redis.url)


def test_a_stopped_model_host_fails_over_with_shared_slots(
    launch, tmp_path_factory, fresh_redis
):
    fakes = [FakeOllama().start(), FakeOllama().start()]
    try:
        env = settings(fakes[0], fresh_redis.url)
        env["OLLAMA_HOST"] = ",".join(fake.url for fake in fakes)
        server = start(launch, tmp_path_factory, env)
        warm(server)
        fakes[1].stop()
        before = len(fakes[0].requests)
        for i in range(6):
            response = requests.post(
                server.url + "/chat",
                json={"message": "x", "conversation_id": f"f{i}"},
                timeout=20,
            )
            assert response.status_code == 200, response.text
        assert len(fakes[0].requests) == before + 6
        assert_nothing_held(fresh_redis.url)
    finally:
        for fake in fakes:
            fake.stop()
