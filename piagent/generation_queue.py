"""The generation queue: a few generations at once, a short FIFO line, a deadline.

A Pi runs one generation at a time, and Ollama queues the rest without bound
(ollama/ollama#7758), so piagent keeps its own line: at most
MAX_CONCURRENT_GENERATIONS requests talk to the model, at most
MAX_QUEUED_GENERATIONS wait for them in arrival order, and anyone beyond that
gets a 503 at once with a Retry-After estimated from recent generations.
A waiter that has not got a slot within MAX_QUEUE_WAIT_SECONDS also gets a
503, so every request ends within piagent's own bounds (wait + generation),
before a proxy's read timeout would answer for it with a page of its own.

A freed slot is handed straight to the first waiter, so a request arriving at
that moment cannot overtake the line. Waiting writes nothing to the client, and
WSGI has no disconnect signal, so a waiter asks `client_present` every
POLL_SECONDS (the blueprint peeks at the socket for EOF) and leaves the line
when its client has gone. Locks and events are the threading ones: under
gunicorn's gevent worker they are patched into their greenlet versions.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import gevent
from gevent import monkey

from piagent.errors import ClientGone, GenerationTimeout, QueueFull

POLL_SECONDS = 0.25
WINDOW = 20
# Per generation, until one has been measured: a short reply on a warm Pi.
FIRST_GUESS_SECONDS = 10.0
MAX_RETRY_AFTER = 3600
T = TypeVar("T")
# Told (host, generations running there, requests waiting) after each change;
# piagent.metrics keeps its gauges with it.
QueueObserver = Callable[[str, int, int], None]


def always_present() -> bool:
    return True


@dataclass(frozen=True)
class Route:
    """Where a request may run, for a queue over several model hosts.

    `order(avoid)` lists the hosts it may use, best first, leaving out `avoid`
    (a host it just failed on) when there is another; without `spread` the
    request waits for the first one (its conversation's host, whose prompt
    cache holds it), with `spread` it takes whichever has the most free slots
    (stateless requests). A queue for one host ignores it.
    """

    order: Callable[[str | None], list[str]]
    spread: bool = False


def estimate_wait(
    durations: list[float], position: int, concurrent: int, guess: float
) -> int:
    """Seconds until `position` generations ahead have finished: the mean of
    recent durations times the position, shared by the concurrent slots."""
    mean = sum(durations) / len(durations) if durations else guess
    seconds = math.ceil(mean * position / concurrent)
    return min(max(seconds, 1), MAX_RETRY_AFTER)


class _Waiter:
    """One request in line: set when it is handed a slot."""

    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.granted = False


class Slot:
    """The right to talk to the model on `host`, until `release()` (safe to
    call twice). A slot of one host cannot move to another."""

    movable = False

    def __init__(self, queue: GenerationQueue, started: float, host: str = "") -> None:
        self._queue = queue
        self.host = host
        self.started = started
        self.deadline = started + queue.max_seconds
        self._released = False

    def move(self, client_present: Callable[[], bool] = always_present) -> None:
        """Give up this host for the next in the request's order (several
        hosts only)."""
        raise NotImplementedError("a slot of one host cannot move")

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._queue._release(self._queue.clock() - self.started)

    def expired(self) -> bool:
        return self._queue.clock() >= self.deadline

    def timeout_error(self) -> GenerationTimeout:
        seconds = f"{self._queue.max_seconds:g}"
        return GenerationTimeout(
            f"the generation took longer than MAX_GENERATION_SECONDS={seconds} s"
        )

    def next_within(self, tokens: Iterator[T]) -> T | None:
        """next(tokens, None) within the deadline, cheaply for each batch.

        A blocked read returns within the provider's read timeout anyway, so a
        timer is armed only once the deadline is nearer than that; before, a
        clock check afterwards is enough (0.2 us per batch, where arming a
        gevent.Timeout costs 2.8 us against ~4 us of CPU per relayed token).
        """
        queue = self._queue
        if self.deadline - queue.clock() > queue.read_horizon:
            token = next(tokens, None)
            if queue.clock() >= self.deadline:
                raise self.timeout_error()
            return token
        with self.bounded():
            return next(tokens, None)

    @contextmanager
    def bounded(self) -> Iterator[None]:
        """Raise GenerationTimeout if the body runs into the deadline.

        Under gevent a timer interrupts a blocked read at the deadline; the
        caller then closes the upstream response, which is how Ollama learns
        to stop. Without gevent (tests in one thread) only the time between
        steps is checked. Arm it around model calls only, never around a
        `yield` to the server, or the timer could fire inside gunicorn.
        """
        remaining = self.deadline - self._queue.clock()
        if remaining <= 0:
            raise self.timeout_error()
        if not monkey.is_module_patched("socket"):
            yield
            if self.expired():
                raise self.timeout_error()
            return
        timer = gevent.Timeout(remaining)
        timer.start()
        try:
            yield
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            raise self.timeout_error() from None
        finally:
            timer.close()


class GenerationQueue:
    """Generation slots, the FIFO line for them, and recent durations for
    Retry-After; one per worker process."""

    def __init__(
        self,
        max_concurrent: int,
        max_queued: int,
        max_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        poll_seconds: float = POLL_SECONDS,
        read_horizon: float = 0.0,
        max_wait: float = math.inf,
        host: str = "",
    ) -> None:
        """`read_horizon`: longest a provider read can block (MODEL_TIMEOUT plus a
        margin); 0 arms a timer around every read. `max_wait`: longest a
        request waits in line, checked every `poll_seconds`. `host` names the
        model host the slots are for."""
        self.host = host
        self.observer: QueueObserver | None = None
        self.max_concurrent = max_concurrent
        self.max_wait = max_wait
        self.read_horizon = read_horizon
        self.max_queued = max_queued
        self.max_seconds = max_seconds
        self.clock = clock
        self._poll = poll_seconds
        self._lock = threading.Lock()
        self._active = 0
        self._waiting: deque[_Waiter] = deque()
        self._durations: deque[float] = deque(maxlen=WINDOW)

    @property
    def active(self) -> int:
        return self._active

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def retry_after(self, position: int) -> int:
        with self._lock:
            durations = list(self._durations)
        return estimate_wait(
            durations, position, self.max_concurrent, FIRST_GUESS_SECONDS
        )

    def acquire(
        self,
        client_present: Callable[[], bool] = always_present,
        route: Route | None = None,
    ) -> Slot:
        """A slot now, or after the requests ahead of this one; QueueFull if
        the line is full, ClientGone if the client leaves while waiting.
        `route` is for queues over several hosts; this one has one."""
        with self._lock:
            if self._active < self.max_concurrent and not self._waiting:
                self._active += 1
                if self.observer is not None:
                    self.observer(self.host, self._active, 0)
                return Slot(self, self.clock(), self.host)
            if len(self._waiting) >= self.max_queued:
                position = len(self._waiting) + 1
                durations = list(self._durations)
                full = True
            else:
                waiter = _Waiter()
                self._waiting.append(waiter)
                full = False
                self._observe()
        if full:
            seconds = estimate_wait(
                durations, position, self.max_concurrent, FIRST_GUESS_SECONDS
            )
            raise QueueFull(
                f"{self.max_concurrent} generation(s) running and "
                f"{self.max_queued} waiting; try again in about {seconds} s",
                retry_after=seconds,
            )
        give_up_at = self.clock() + self.max_wait
        try:
            while not waiter.event.wait(self._poll):
                if not client_present():
                    raise ClientGone("the client left while waiting for the model")
                if self.clock() >= give_up_at:
                    raise self._waited_too_long()
        except BaseException:
            with self._lock:
                if waiter.granted:
                    self._hand_over()
                else:
                    self._waiting.remove(waiter)
                    self._observe()
            raise
        return Slot(self, self.clock(), self.host)

    def _waited_too_long(self) -> QueueFull:
        seconds = self.retry_after(1)
        return QueueFull(
            f"waited {self.max_wait:g} s (MAX_QUEUE_WAIT_SECONDS) without a "
            f"generation slot; try again in about {seconds} s",
            retry_after=seconds,
        )

    def _release(self, duration: float) -> None:
        with self._lock:
            self._durations.append(duration)
            self._hand_over()

    def _hand_over(self) -> None:
        """Pass a finished slot to the first waiter, or free it (lock held)."""
        if self._waiting:
            waiter = self._waiting.popleft()
            waiter.granted = True
            waiter.event.set()
        else:
            self._active -= 1
        self._observe()

    def _observe(self) -> None:
        if self.observer is not None:
            self.observer(self.host, self._active, len(self._waiting))
