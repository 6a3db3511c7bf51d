"""Redis specifics: native expiry, capped lists, and Redis down or hung."""

import os
import signal
import time

import pytest
import redis

from piagent.errors import MemoryUnavailable
from piagent.memory.redis_store import RedisMemoryStore
from tests.support.redis_server import RedisServer


@pytest.fixture
def own_redis(redis_server, tmp_path):
    """A Redis of this test's own, so stopping it disturbs no other test."""
    server = RedisServer(tmp_path).start()
    yield server
    if server.process is not None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


def test_keys_carry_redis_native_ttl_and_lists_are_capped(redis_server):
    url = redis_server.url.rsplit("/", 1)[0] + "/2"
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    store = RedisMemoryStore(url, max_turns=4, ttl_seconds=90, max_conversations=10)
    for i in range(5):
        store.append_exchange("c", f"q{i}", f"a{i}")
    assert client.llen("piagent:memory:c:messages") == 4
    for key in ("piagent:memory:c:messages", "piagent:memory:c:meta"):
        assert 85_000 < client.pttl(key) <= 90_000
    assert client.zrange("piagent:memory:lru", 0, -1) == ["c"]


def test_redis_down_is_unavailable_quickly_and_recovers_by_itself(own_redis):
    store = RedisMemoryStore(own_redis.url, 8, 3600, 500, timeout=1.0)
    store.append_exchange("c", "q", "a")
    own_redis.stop()
    started = time.monotonic()
    with pytest.raises(MemoryUnavailable, match="conversation memory is unavailable"):
        store.history("c")
    assert time.monotonic() - started < 5
    own_redis.start()
    store.append_exchange("c", "back", "again")
    assert [m.content for m in store.history("c")] == ["back", "again"]


def test_hung_redis_is_unavailable_after_the_timeout_not_a_hang(own_redis):
    store = RedisMemoryStore(own_redis.url, 8, 3600, 500, timeout=0.5)
    store.append_exchange("c", "q", "a")
    os.kill(own_redis.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(MemoryUnavailable, match="Timeout"):
            store.append_exchange("c", "q2", "a2")
        assert time.monotonic() - started < 5
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
    assert store.history("c")


def test_describe_names_the_server_but_not_the_password():
    store = RedisMemoryStore("redis://:s3cret@127.0.0.1:6390/3", 8, 60, 10)
    assert store.describe() == "redis at 127.0.0.1:6390 db 3"
