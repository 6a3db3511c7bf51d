"""The memory store contract, parametrized so every backend must pass it."""

import threading

import pytest

from piagent.memory import LocalMemoryStore, Message


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def local_store(max_turns=8, ttl=3600.0, cap=500, clock=None):
    return LocalMemoryStore(max_turns, ttl, cap, clock=clock or Clock())


STORES = [pytest.param(local_store, id="local")]


@pytest.fixture(params=STORES)
def make_store(request):
    return request.param


def test_unknown_conversation_has_no_history(make_store):
    assert make_store().history("nope") == []


def test_exchange_is_read_back_in_order(make_store):
    store = make_store()
    store.append_exchange("c", "hi", "hello")
    store.append_exchange("c", "how?", "fine")
    assert store.history("c") == [
        Message("user", "hi"),
        Message("assistant", "hello"),
        Message("user", "how?"),
        Message("assistant", "fine"),
    ]


def test_window_keeps_last_turns_oldest_dropped_first(make_store):
    store = make_store(max_turns=4)
    for i in range(5):
        store.append_exchange("c", f"q{i}", f"a{i}")
    assert [m.content for m in store.history("c")] == ["q3", "a3", "q4", "a4"]


def test_window_never_starts_with_an_assistant_message(make_store):
    store = make_store(max_turns=3)
    store.append_exchange("c", "q0", "a0")
    store.append_exchange("c", "q1", "a1")
    assert [m.content for m in store.history("c")] == ["q1", "a1"]


def test_zero_turns_stores_nothing(make_store):
    store = make_store(max_turns=0)
    store.append_exchange("c", "q", "a")
    assert store.history("c") == []


def test_idle_conversation_expires_after_ttl(make_store):
    clock = Clock()
    store = make_store(ttl=60.0, clock=clock)
    store.append_exchange("old", "q", "a")
    clock.now += 30
    store.append_exchange("young", "q", "a")
    clock.now += 31
    assert store.history("old") == []
    assert len(store.history("young")) == 2
    assert len(store) == 1


def test_reading_keeps_a_conversation_alive(make_store):
    clock = Clock()
    store = make_store(ttl=60.0, clock=clock)
    store.append_exchange("c", "q", "a")
    for _ in range(3):
        clock.now += 50
        assert store.history("c")


def test_least_recently_used_conversation_is_evicted(make_store):
    store = make_store(cap=2)
    store.append_exchange("a", "q", "a")
    store.append_exchange("b", "q", "a")
    store.history("a")
    store.append_exchange("c", "q", "a")
    assert store.history("b") == []
    assert store.history("a") and store.history("c")
    assert len(store) == 2


def test_concurrent_exchanges_are_neither_lost_nor_interleaved(make_store):
    store = make_store(max_turns=200)
    barrier = threading.Barrier(50)

    def append(i: int) -> None:
        barrier.wait()
        store.append_exchange("c", f"q{i}", f"a{i}")

    threads = [threading.Thread(target=append, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    history = store.history("c")
    assert len(history) == 100
    pairs = list(zip(history[::2], history[1::2], strict=True))
    assert {(q.content[1:], a.content[1:]) for q, a in pairs} == {
        (str(i), str(i)) for i in range(50)
    }
    assert all(q.role == "user" and a.role == "assistant" for q, a in pairs)
