"""The generation queue on its own: slots, FIFO hand-over, a full line, estimates."""

import threading

import pytest

from piagent.errors import ClientGone, GenerationTimeout, QueueFull
from piagent.generation_queue import GenerationQueue, estimate_wait
from piagent.settings import Settings, SettingsError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_queue(concurrent=1, queued=2, seconds=60.0, clock=None) -> GenerationQueue:
    return GenerationQueue(
        concurrent, queued, seconds, clock=clock or Clock(), poll_seconds=0.01
    )


def waiting_thread(queue, results, name, present=lambda: True):
    def run():
        try:
            results.append((name, queue.acquire(present)))
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            results.append((name, exc))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_until(condition) -> None:
    event = threading.Event()
    for _ in range(500):
        if condition():
            return
        event.wait(0.01)
    raise AssertionError("condition never became true")


def test_free_slots_are_taken_at_once_up_to_the_limit():
    queue = make_queue(concurrent=2)
    first, second = queue.acquire(), queue.acquire()
    assert queue.active == 2 and queue.waiting == 0
    first.release()
    second.release()
    assert queue.active == 0


def test_a_full_line_is_refused_at_once_with_an_estimate():
    queue = make_queue(concurrent=1, queued=0)
    slot = queue.acquire()
    with pytest.raises(QueueFull) as caught:
        queue.acquire()
    assert caught.value.status == 503
    assert int(caught.value.headers["Retry-After"]) >= 1
    slot.release()
    queue.acquire().release()


def test_waiters_get_the_slot_in_arrival_order():
    queue = make_queue(concurrent=1, queued=3)
    slot = queue.acquire()
    results, threads = [], []
    for count, name in enumerate(("a", "b", "c"), 1):
        threads.append(waiting_thread(queue, results, name))
        wait_until(lambda count=count: queue.waiting == count)
    order = []
    holder = slot
    for count in range(1, 4):
        holder.release()
        wait_until(lambda count=count: len(results) == count)
        name, holder = results[-1]
        order.append(name)
    holder.release()
    for thread in threads:
        thread.join()
    assert order == ["a", "b", "c"]
    assert queue.active == 0 and queue.waiting == 0


def test_a_freed_slot_goes_to_the_line_not_to_a_newcomer():
    queue = make_queue(concurrent=1, queued=2)
    slot = queue.acquire()
    results = []
    first = waiting_thread(queue, results, "waiter")
    wait_until(lambda: queue.waiting == 1)
    slot.release()
    # At once, before the waiter may even have woken: the newcomer must queue.
    newcomer = waiting_thread(queue, results, "newcomer")
    first.join()
    wait_until(lambda: queue.waiting == 1)
    assert [name for name, _ in results] == ["waiter"]
    results[0][1].release()
    newcomer.join()
    assert [name for name, _ in results] == ["waiter", "newcomer"]
    results[1][1].release()
    assert queue.active == 0


def test_a_waiter_whose_client_left_leaves_the_line():
    queue = make_queue(concurrent=1, queued=1)
    slot = queue.acquire()
    gone = threading.Event()
    results = []
    thread = waiting_thread(queue, results, "w", present=lambda: not gone.is_set())
    wait_until(lambda: queue.waiting == 1)
    gone.set()
    thread.join()
    assert isinstance(results[0][1], ClientGone)
    assert queue.waiting == 0
    slot.release()
    assert queue.active == 0


def test_a_waiter_gives_up_after_the_longest_wait_with_a_503():
    clock = Clock()
    queue = GenerationQueue(1, 2, 60.0, clock=clock, poll_seconds=0.01, max_wait=30)
    slot = queue.acquire()

    def present() -> bool:
        clock.now += 10  # each poll, ten seconds pass in line
        return True

    with pytest.raises(QueueFull) as caught:
        queue.acquire(present)
    assert clock.now == 130.0  # gave up at the first poll past 30 s
    assert caught.value.status == 503
    assert "MAX_QUEUE_WAIT_SECONDS" in caught.value.detail
    assert int(caught.value.headers["Retry-After"]) >= 1
    assert queue.waiting == 0
    slot.release()
    assert queue.active == 0


def test_a_waiter_granted_the_slot_as_its_client_leaves_passes_it_on():
    queue = make_queue(concurrent=1, queued=2)
    holder = queue.acquire()

    def leaves_as_it_is_served() -> bool:
        holder.release()  # the slot is handed to this waiter...
        return False  # ...just as its client is found gone

    with pytest.raises(ClientGone):
        queue.acquire(leaves_as_it_is_served)
    assert queue.active == 0 and queue.waiting == 0
    queue.acquire().release()


def test_a_token_past_the_deadline_ends_the_generation_cheaply_checked():
    clock = Clock()
    queue = GenerationQueue(1, 0, 5.0, clock=clock, read_horizon=1.0)
    slot = queue.acquire()

    def tokens():
        yield "a"
        clock.now += 6  # the model took past the deadline for this one
        yield "b"

    stream = tokens()
    assert slot.next_within(stream) == "a"  # far from the deadline: no timer
    with pytest.raises(GenerationTimeout):
        slot.next_within(stream)
    slot.release()


def test_release_twice_frees_one_slot_only():
    queue = make_queue(concurrent=2)
    slot = queue.acquire()
    queue.acquire()
    slot.release()
    slot.release()
    assert queue.active == 1


def test_retry_after_follows_measured_generation_times():
    clock = Clock()
    queue = make_queue(concurrent=1, queued=0, clock=clock)
    for duration in (30.0, 50.0):
        slot = queue.acquire()
        clock.now += duration
        slot.release()
    queue.acquire()
    with pytest.raises(QueueFull) as caught:
        queue.acquire()
    assert caught.value.headers["Retry-After"] == "40"


@pytest.mark.parametrize(
    ("durations", "position", "concurrent", "expected"),
    [
        ([], 1, 1, 10),
        ([20.0, 40.0], 3, 1, 90),
        ([20.0, 40.0], 3, 2, 45),
        ([0.01], 1, 1, 1),
        ([10_000.0], 5, 1, 3600),
    ],
)
def test_estimate_is_mean_times_position_over_slots(
    durations, position, concurrent, expected
):
    assert estimate_wait(durations, position, concurrent, 10.0) == expected


def test_a_slot_past_its_deadline_refuses_more_model_calls():
    clock = Clock()
    queue = make_queue(seconds=5.0, clock=clock)
    slot = queue.acquire()
    with slot.bounded():
        clock.now += 1
    clock.now += 10
    with pytest.raises(GenerationTimeout) as caught:
        with slot.bounded():
            pass
    assert caught.value.status == 504
    assert "MAX_GENERATION_SECONDS=5" in caught.value.detail
    slot.release()


def test_a_step_that_runs_past_the_deadline_raises_after_it():
    clock = Clock()
    queue = make_queue(seconds=5.0, clock=clock)
    slot = queue.acquire()
    with pytest.raises(GenerationTimeout):
        with slot.bounded():
            clock.now += 6
    slot.release()


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("max_concurrent_generations", 0, "MAX_CONCURRENT_GENERATIONS=0: expected"),
        ("max_queued_generations", -1, "MAX_QUEUED_GENERATIONS=-1: expected"),
        ("max_generation_seconds", 0.0, "MAX_GENERATION_SECONDS=0.0: expected"),
        ("max_queue_wait_seconds", -1.0, "MAX_QUEUE_WAIT_SECONDS=-1.0: expected"),
    ],
)
def test_bad_queue_settings_stop_start_up_in_one_line(field, value, expected):
    with pytest.raises(SettingsError) as caught:
        Settings(**{field: value})
    assert str(caught.value).startswith(expected)
    assert "\n" not in str(caught.value)


def test_queue_settings_default_to_one_slot_like_ollama():
    settings = Settings()
    assert settings.max_concurrent_generations == 1
    assert settings.max_queued_generations == 4
    assert settings.max_generation_seconds == 600
    assert settings.max_queue_wait_seconds == 300
