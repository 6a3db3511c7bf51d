"""Redis down through the real server: a fast 503, /health untouched, self-recovery."""

import os
import signal
import threading
import time

import pytest
import requests

from tests.support.fake_ollama import Behaviour
from tests.support.redis_server import RedisServer


@pytest.fixture
def own_redis(redis_server, tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    if server.process is not None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


@pytest.fixture
def redis_backed(launch, fake_ollama, own_redis, ollama):
    return launch(
        {
            "OLLAMA_HOST": fake_ollama.url,
            "MEMORY_BACKEND": "redis",
            "REDIS_URL": own_redis.url,
        }
    ).wait_ready()


def post(server, message, cid="r", stream=False):
    return requests.post(
        server.url + "/chat",
        json={"message": message, "conversation_id": cid, "stream": stream},
        timeout=20,
        stream=stream,
    )


def assert_memory_503(response):
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json()["detail"].startswith("conversation memory is unavailable")


def test_redis_down_is_a_quick_503_and_piagent_recovers(
    redis_backed, own_redis, ollama
):
    assert post(redis_backed, "before").status_code == 200
    own_redis.stop()
    ollama.reset()
    started = time.monotonic()
    assert_memory_503(post(redis_backed, "during"))
    assert time.monotonic() - started < 5
    assert ollama.requests == [], "the model was asked although memory was down"
    url = f"{redis_backed.url}/conversations/r"
    assert_memory_503(requests.get(url, timeout=10))
    assert_memory_503(requests.delete(url, timeout=10))
    assert requests.get(redis_backed.url + "/health", timeout=5).status_code == 200
    redis_backed.wait_for_log("MemoryUnavailable: conversation memory is unavailable")

    own_redis.start()
    assert post(redis_backed, "after").status_code == 200
    # A fresh Redis (nothing saved): the conversation starts again from here.
    messages = requests.get(url, timeout=5).json()["messages"]
    assert [m["content"] for m in messages] == ["after", "".join(Behaviour().tokens)]


def test_hung_redis_is_a_503_within_the_timeout(redis_backed, own_redis):
    assert post(redis_backed, "before").status_code == 200
    os.kill(own_redis.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert_memory_503(post(redis_backed, "during"))
        assert time.monotonic() - started < 5
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)


def test_json_reply_not_stored_because_redis_left_is_a_503(
    redis_backed, own_redis, ollama
):
    ollama.behaviour = Behaviour(first_delay=1.0)
    replies = []
    thread = threading.Thread(
        target=lambda: replies.append(post(redis_backed, "slow", cid="j"))
    )
    thread.start()
    deadline = time.monotonic() + 5
    while not ollama.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    own_redis.stop()
    thread.join()
    assert_memory_503(replies[0])


def test_stream_finishes_when_redis_leaves_and_the_loss_is_logged(
    redis_backed, own_redis, ollama
):
    tokens = [f"t{i} " for i in range(8)]
    ollama.behaviour = Behaviour(tokens=tokens, delay=0.1)
    response = post(redis_backed, "stream", cid="s", stream=True)
    chunks = response.iter_content(chunk_size=None)
    first = next(chunks)
    own_redis.stop()
    body = first + b"".join(chunks)
    assert body.decode() == "".join(tokens)
    redis_backed.wait_for_log("exchange of s not stored: conversation memory is")
