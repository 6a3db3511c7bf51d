"""Generation slots shared through a real Redis, in process: leases, renewal,
the line across queues, failing closed, a Redis that restarts empty."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from piagent.errors import ClientGone, QueueFull, StateUnavailable
from piagent.generation_queue import Route
from piagent.settings import Settings, SettingsError
from piagent.shared_slots import SharedQueue
from tests.support.redis_server import RedisServer
from tests.support.server import free_port

HOST = "http://a:11434"
LEASE = 1.0


@pytest.fixture
def prefix(redis_server: RedisServer) -> Iterator[str]:
    """Keys of this test's own; checked for leaks afterwards."""
    name = f"test:{uuid.uuid4().hex[:8]}:"
    yield name
    queue = SharedQueue(redis_server.url, [HOST], 1, 1, 60, prefix=name)
    assert queue.holders() == 0
    assert queue.client.zcard(name + "line") == 0


def make(url: str, prefix: str, concurrent=1, queued=4, wait=30.0, hosts=(HOST,)):
    queue = SharedQueue(
        url,
        list(hosts),
        concurrent,
        queued,
        60.0,
        lease_seconds=LEASE,
        poll_seconds=0.02,
        max_wait=wait,
        prefix=prefix,
    )
    # A fresh Redis admits nobody for one lease; these keys start settled.
    queue.client.set(prefix + "epoch", 0)
    return queue


def acquire_in_thread(queue, results, present=lambda: True, route=None):
    def run():
        try:
            results.append(queue.acquire(present, route))
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            results.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_until(condition, timeout=5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition never became true")
        time.sleep(0.01)


def test_two_processes_share_one_slot_and_hand_it_over_in_order(redis_server, prefix):
    holder = make(redis_server.url, prefix)
    slot = holder.acquire()
    assert holder.holders() == 1
    # Three more processes; the first in line polls slowest, and still goes first.
    waiters = [make(redis_server.url, prefix) for _ in range(3)]
    waiters[0]._poll = 0.2
    results: list = []
    threads = []
    for count, queue in enumerate(waiters, 1):
        threads.append(acquire_in_thread(queue, results))
        wait_until(lambda count=count: holder.client.zcard(prefix + "line") == count)
    slot.release()
    for index in range(3):
        wait_until(lambda index=index: len(results) == index + 1)
        assert holder.holders() == 1
        results[index].release()
    for thread in threads:
        thread.join(5)
    assert [r._shared for r in results] == waiters


def test_a_full_shared_line_is_refused_with_an_estimate(redis_server, prefix):
    first, second = make(redis_server.url, prefix, queued=1), None
    slot = first.acquire()
    results: list = []
    thread = acquire_in_thread(first, results)
    wait_until(lambda: first.client.zcard(prefix + "line") == 1)
    second = make(redis_server.url, prefix, queued=1)
    with pytest.raises(QueueFull) as caught:
        second.acquire()
    assert "across every piagent process" in caught.value.detail
    assert int(caught.value.headers["Retry-After"]) >= 1
    slot.release()
    thread.join(5)
    results[0].release()


def test_a_lease_is_renewed_while_the_generation_runs(redis_server, prefix):
    first = make(redis_server.url, prefix)
    second = make(redis_server.url, prefix, wait=3 * LEASE)
    slot = first.acquire()
    with pytest.raises(QueueFull, match="waited"):
        second.acquire()  # three leases long: still held
    slot.release()
    second.acquire().release()


def test_a_holder_that_stops_renewing_frees_its_slot_within_the_lease(
    redis_server, prefix
):
    first, second = make(redis_server.url, prefix), make(redis_server.url, prefix)
    first.acquire()
    first._held.clear()  # as if its process died: nothing renews it any more
    started = time.monotonic()
    slot = second.acquire()
    assert time.monotonic() - started <= LEASE + 0.5
    slot.release()


def test_a_waiter_whose_client_left_leaves_the_line_at_once(redis_server, prefix):
    queue = make(redis_server.url, prefix)
    slot = queue.acquire()
    present = threading.Event()
    present.set()
    results: list = []
    thread = acquire_in_thread(queue, results, present.is_set)
    wait_until(lambda: queue.client.zcard(prefix + "line") == 1)
    present.clear()
    thread.join(5)
    assert isinstance(results[0], ClientGone)
    assert queue.client.zcard(prefix + "line") == 0
    assert queue.client.hlen(prefix + "wants") == 0
    slot.release()


def test_slots_are_per_host_with_several_hosts(redis_server, prefix):
    hosts = ("http://a:1", "http://b:1")
    queue = make(redis_server.url, prefix, hosts=hosts)
    on_a = queue.acquire(route=Route(lambda avoid: ["http://a:1"]))
    on_b = queue.acquire(route=Route(lambda avoid: ["http://b:1"]))
    assert (on_a.host, on_b.host) == hosts
    assert queue.holders("http://a:1") == queue.holders("http://b:1") == 1
    on_a.move()  # a failed: b's only slot is taken, so it waits, then gets it
    on_a.release()
    on_b.release()
    assert queue.holders() == 0


def test_retry_after_comes_from_every_processes_durations(redis_server, prefix):
    first, second = make(redis_server.url, prefix), make(redis_server.url, prefix)
    slot = first.acquire()
    slot.started -= 40  # a 40-second generation
    slot.release()
    assert second.retry_after(2) == 80


def test_redis_down_admits_nobody_and_says_so():
    queue = SharedQueue(f"redis://127.0.0.1:{free_port()}/0", [HOST], 1, 4, 60)
    with pytest.raises(StateUnavailable) as caught:
        queue.acquire()
    assert caught.value.status == 503
    assert caught.value.headers == {"Retry-After": "5"}
    assert "generation slots cannot be counted" in caught.value.detail
    with pytest.raises(StateUnavailable):
        queue.ping()


def test_a_redis_restarted_empty_waits_a_lease_so_running_slots_reregister(
    tmp_path,
):
    server = RedisServer(tmp_path).start()
    try:
        prefix = "restart:"
        first = make(server.url, prefix)
        second = make(server.url, prefix)
        slot = first.acquire()
        server.stop()
        server.start()  # empty: the running generation's lease is gone
        started = time.monotonic()
        results: list = []
        thread = acquire_in_thread(second, results)
        # The renewal re-registers the running slot before anyone is let in.
        wait_until(lambda: first.holders() == 1, timeout=LEASE * 2)
        time.sleep(LEASE)
        assert results == []
        slot.release()
        thread.join(5)
        assert time.monotonic() - started >= LEASE
        results[0].release()
        assert second.holders() == 0
    finally:
        server.stop()


def test_a_fresh_redis_with_no_room_in_line_says_why_it_refuses(redis_server):
    prefix = f"fresh:{uuid.uuid4().hex[:8]}:"
    queue = SharedQueue(
        redis_server.url, [HOST], 1, 0, 60, lease_seconds=LEASE, prefix=prefix
    )
    with pytest.raises(QueueFull) as caught:
        queue.acquire()
    assert "counted afresh after Redis started empty" in caught.value.detail
    assert caught.value.headers["Retry-After"] == "1"
    assert queue.holders() == 0


def test_state_backend_settings():
    assert Settings().state_backend == "local"
    with pytest.raises(SettingsError, match="STATE_BACKEND='shared'"):
        Settings(state_backend="shared")
    with pytest.raises(SettingsError, match="REDIS_URL"):
        Settings(state_backend="redis", redis_url="http://nope")
    with pytest.raises(SettingsError, match="SLOT_LEASE_SECONDS"):
        Settings(slot_lease_seconds=0.5)
