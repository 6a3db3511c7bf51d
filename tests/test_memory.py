"""The memory store contract, parametrized so every backend must pass the same tests."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest
import redis

from piagent.memory import LocalMemoryStore, Message
from piagent.memory.redis_store import RedisMemoryStore
from piagent.memory.sqlite_store import SQLiteMemoryStore

CONTRACT_REDIS_DB = 1


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Backend:
    """One store kind: builds stores that share a clock, and moves time on."""

    def __init__(self, kind: str, location: str = "") -> None:
        self.kind = kind
        self.location = location
        self.clock = Clock()

    def store(self, max_turns=8, ttl=3600.0, cap=500):
        return open_store(self.kind, self.location, max_turns, ttl, cap, self.clock)

    def advance(self, seconds: float) -> None:
        """The injected clock moves; Redis's own expiry is moved by PEXPIRE."""
        self.clock.now += seconds
        if self.kind != "redis":
            return
        client = redis.Redis.from_url(self.location)
        for key in client.scan_iter("piagent:*"):
            left = client.pttl(key)
            if left >= 0 and left <= seconds * 1000:
                client.delete(key)
            elif left > 0:
                client.pexpire(key, left - int(seconds * 1000))
        client.close()


def open_store(kind, location, max_turns, ttl, cap, clock=None):
    extra = {"clock": clock} if clock else {}
    if kind == "sqlite":
        return SQLiteMemoryStore(location, max_turns, ttl, cap, **extra)
    if kind == "redis":
        return RedisMemoryStore(location, max_turns, ttl, cap, **extra)
    return LocalMemoryStore(max_turns, ttl, cap, **extra)


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / "memory.sqlite3"))
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        url = server.url.rsplit("/", 1)[0] + f"/{CONTRACT_REDIS_DB}"
        redis.Redis.from_url(url).flushdb()
        return Backend("redis", url)
    return Backend("memory")


def test_unknown_conversation_has_no_history(backend):
    store = backend.store()
    assert store.history("nope") == []
    assert store.conversation("nope") is None


def test_exchange_is_read_back_in_order(backend):
    store = backend.store()
    store.append_exchange("c", "hi", "hello")
    store.append_exchange("c", "how?", "fine ✓")
    assert store.history("c") == [
        Message("user", "hi"),
        Message("assistant", "hello"),
        Message("user", "how?"),
        Message("assistant", "fine ✓"),
    ]


def test_window_keeps_last_turns_oldest_dropped_first(backend):
    store = backend.store(max_turns=4)
    for i in range(5):
        store.append_exchange("c", f"q{i}", f"a{i}")
    assert [m.content for m in store.history("c")] == ["q3", "a3", "q4", "a4"]


def test_window_never_starts_with_an_assistant_message(backend):
    store = backend.store(max_turns=3)
    store.append_exchange("c", "q0", "a0")
    store.append_exchange("c", "q1", "a1")
    assert [m.content for m in store.history("c")] == ["q1", "a1"]
    assert [m.content for m in store.conversation("c").messages] == ["q1", "a1"]


def test_zero_turns_stores_nothing(backend):
    store = backend.store(max_turns=0)
    store.append_exchange("c", "q", "a")
    assert store.history("c") == []
    assert len(store) == 0


def test_idle_conversation_expires_after_ttl(backend):
    store = backend.store(ttl=60.0)
    store.append_exchange("old", "q", "a")
    backend.advance(30)
    store.append_exchange("young", "q", "a")
    backend.advance(31)
    assert store.history("old") == []
    assert store.conversation("old") is None
    assert len(store.history("young")) == 2
    assert len(store) == 1


def test_reading_keeps_a_conversation_alive(backend):
    store = backend.store(ttl=60.0)
    store.append_exchange("c", "q", "a")
    for _ in range(3):
        backend.advance(50)
        assert store.history("c")


def test_inspecting_a_conversation_does_not_keep_it_alive(backend):
    store = backend.store(ttl=60.0)
    store.append_exchange("c", "q", "a")
    backend.advance(50)
    assert store.conversation("c") is not None
    backend.advance(11)
    assert store.conversation("c") is None


def test_conversation_shows_messages_and_times(backend):
    store = backend.store(ttl=60.0)
    started = backend.clock.now
    store.append_exchange("c", "q0", "a0")
    backend.advance(10)
    store.append_exchange("c", "q1", "a1")
    found = store.conversation("c")
    assert found.conversation_id == "c"
    assert [m.content for m in found.messages] == ["q0", "a0", "q1", "a1"]
    assert found.created_at == pytest.approx(started)
    assert found.updated_at == pytest.approx(started + 10)
    assert found.expires_at == pytest.approx(started + 70)


def test_least_recently_used_conversation_is_evicted(backend):
    store = backend.store(cap=2)
    store.append_exchange("a", "q", "a")
    backend.advance(1)
    store.append_exchange("b", "q", "a")
    backend.advance(1)
    store.history("a")
    backend.advance(1)
    store.append_exchange("c", "q", "a")
    assert store.history("b") == []
    assert store.history("a") and store.history("c")
    assert len(store) == 2


def test_new_conversation_is_never_its_own_eviction_victim(backend):
    store = backend.store(cap=1)
    store.append_exchange("a", "q", "a")
    store.append_exchange("b", "q", "a")
    assert store.history("a") == []
    assert store.history("b")


def test_forget_removes_a_conversation_and_is_idempotent(backend):
    store = backend.store()
    store.append_exchange("c", "q", "a")
    store.append_exchange("other", "q", "a")
    store.forget("c")
    store.forget("c")
    store.forget("never-seen")
    assert store.history("c") == [] and store.conversation("c") is None
    assert store.history("other")
    assert len(store) == 1
    store.append_exchange("c", "new", "start")
    assert [m.content for m in store.history("c")] == ["new", "start"]


def test_ids_that_look_like_key_suffixes_do_not_collide(backend):
    store = backend.store()
    for cid in ("x", "x:messages", "x:meta", "lru"):
        store.append_exchange(cid, f"q-{cid}", f"a-{cid}")
    for cid in ("x", "x:messages", "x:meta", "lru"):
        assert [m.content for m in store.history(cid)] == [f"q-{cid}", f"a-{cid}"]


def _append_from_threads(kind: str, location: str, indices, barrier) -> None:
    """Append one exchange per index, each from its own thread, all at once."""
    _append_from_threads_into(
        open_store(kind, location, 200, 3600.0, 500), indices, barrier
    )


def test_concurrent_exchanges_are_neither_lost_nor_interleaved(backend):
    """50 appends at once: threads of one process for the in-process store, five
    processes of ten threads each for the stores that processes share."""
    store = backend.store(max_turns=200)
    if backend.kind == "memory":
        barrier = threading.Barrier(50)
        _append_from_threads_into(store, range(50), barrier)
    else:
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(50)
        processes = [
            context.Process(
                target=_append_from_threads,
                args=(backend.kind, backend.location, range(p, 50, 5), barrier),
            )
            for p in range(5)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
        assert [process.exitcode for process in processes] == [0] * 5
    history = store.history("c")
    assert len(history) == 100
    pairs = list(zip(history[::2], history[1::2], strict=True))
    assert {(q.content[1:], a.content[1:]) for q, a in pairs} == {
        (str(i), str(i)) for i in range(50)
    }
    assert all(q.role == "user" and a.role == "assistant" for q, a in pairs)


def _append_from_threads_into(store, indices, barrier) -> None:
    def append(i: int) -> None:
        barrier.wait()
        store.append_exchange("c", f"q{i}", f"a{i}")

    threads = [threading.Thread(target=append, args=(i,)) for i in indices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
