"""Generation slots per model host, with one FIFO line across all hosts.

MAX_CONCURRENT_GENERATIONS applies to each host (each Ollama serves its own),
MAX_QUEUED_GENERATIONS to the one line. A request waits for a slot on its
conversation's host (`Route.order(None)[0]`), never for another's: moving a
conversation costs the other host a full read of its history (10-45 prompt
tokens a second on a Pi: a minute or more for a long conversation) and evicts
that host's own cached conversation, which is worse than waiting out one
generation ahead. It moves only when its host fails or goes down (the route
then names the next host). Stateless requests (`Route.spread`) take the host
with the most free slots.

The line is first come, first served per host: a freed slot goes to the
first request in line that wants that host, and a newcomer takes a free slot
only when nobody in line wants it. Health changes are seen when a slot frees,
when a request arrives, and at every waiter's poll (POLL_SECONDS).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence

from piagent.errors import ClientGone, QueueFull
from piagent.generation_queue import (
    FIRST_GUESS_SECONDS,
    POLL_SECONDS,
    GenerationQueue,
    Route,
    Slot,
    _Waiter,
    always_present,
    estimate_wait,
)


class _HostWaiter(_Waiter):
    __slots__ = ("route", "avoid", "host")

    def __init__(self, route: Route, avoid: str | None = None) -> None:
        super().__init__()
        self.route = route
        self.avoid = avoid
        self.host = ""


class HostSlot(Slot):
    """A slot on one of several hosts; `move()` trades it for the next host."""

    movable = True

    def __init__(
        self, queue: HostQueue, started: float, host: str, route: Route
    ) -> None:
        super().__init__(queue, started, host)
        self._hosts = queue
        self.route = route

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._hosts._release_on(self.host, self._hosts.clock() - self.started)

    def move(self, client_present: Callable[[], bool] = always_present) -> None:
        """Free this host and wait, at the head of the line, for the next host
        in the route (the deadline still counts from the first slot)."""
        self.host = self._hosts._move(self, client_present)


class HostQueue(GenerationQueue):
    """GenerationQueue's line and estimates, with slots counted per host."""

    def __init__(
        self,
        hosts: Sequence[str],
        max_concurrent: int,
        max_queued: int,
        max_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        poll_seconds: float = POLL_SECONDS,
        read_horizon: float = 0.0,
        max_wait: float = math.inf,
    ) -> None:
        super().__init__(
            max_concurrent,
            max_queued,
            max_seconds,
            clock=clock,
            poll_seconds=poll_seconds,
            read_horizon=read_horizon,
            max_wait=max_wait,
            host=hosts[0],
        )
        self.hosts = list(hosts)
        self._busy = dict.fromkeys(self.hosts, 0)
        self._line: deque[_HostWaiter] = deque()
        everywhere = list(self.hosts)
        self._anywhere = Route(lambda avoid: everywhere, spread=True)

    @property
    def active(self) -> int:
        return sum(self._busy.values())

    @property
    def waiting(self) -> int:
        return len(self._line)

    def busy(self, host: str) -> int:
        return self._busy[host]

    def retry_after(self, position: int) -> int:
        with self._lock:
            durations = list(self._durations)
        return estimate_wait(
            durations,
            position,
            self.max_concurrent * len(self.hosts),
            FIRST_GUESS_SECONDS,
        )

    def acquire(
        self,
        client_present: Callable[[], bool] = always_present,
        route: Route | None = None,
    ) -> Slot:
        route = route or self._anywhere
        waiter = _HostWaiter(route)
        with self._lock:
            self._dispatch()
            host = self._pick(waiter)
            if host is not None:
                self._take(host)
                return HostSlot(self, self.clock(), host, route)
            if len(self._line) >= self.max_queued:
                position = len(self._line) + 1
                durations = list(self._durations)
                seconds = estimate_wait(
                    durations,
                    position,
                    self.max_concurrent * len(self.hosts),
                    FIRST_GUESS_SECONDS,
                )
                raise QueueFull(
                    f"{self.max_concurrent} generation(s) running on each of "
                    f"{len(self.hosts)} model hosts and {self.max_queued} "
                    f"waiting; try again in about {seconds} s",
                    retry_after=seconds,
                )
            self._line.append(waiter)
            self._observe_all()
        self._wait(waiter, client_present)
        return HostSlot(self, self.clock(), waiter.host, route)

    def _move(self, slot: HostSlot, client_present: Callable[[], bool]) -> str:
        waiter = _HostWaiter(slot.route, avoid=slot.host)
        with self._lock:
            self._busy[slot.host] -= 1
            self._dispatch()
            host = self._pick(waiter)
            if host is not None:
                self._take(host)
                return host
            self._line.appendleft(waiter)
            self._observe_all()
        try:
            self._wait(waiter, client_present)
        except BaseException:
            slot._released = True  # its host was given back above
            raise
        return waiter.host

    def _wait(self, waiter: _HostWaiter, client_present: Callable[[], bool]) -> None:
        give_up_at = self.clock() + self.max_wait
        try:
            while not waiter.event.wait(self._poll):
                if not client_present():
                    raise ClientGone("the client left while waiting for the model")
                if self.clock() >= give_up_at:
                    raise self._waited_too_long()
                with self._lock:  # a host may have come back or gone down
                    self._dispatch()
        except BaseException:
            with self._lock:
                if waiter.granted:
                    self._busy[waiter.host] -= 1
                    self._dispatch()
                else:
                    self._line.remove(waiter)
                self._observe_all()
            raise

    def _pick(self, waiter: _HostWaiter) -> str | None:
        """The host `waiter` may take now, or None (lock held)."""
        hosts = waiter.route.order(waiter.avoid)
        limit = self.max_concurrent
        if not waiter.route.spread:
            first = hosts[0]
            return first if self._busy[first] < limit else None
        best = min(hosts, key=self._busy.__getitem__)
        return best if self._busy[best] < limit else None

    def _take(self, host: str) -> None:
        self._busy[host] += 1
        self._observe_all()

    def _dispatch(self) -> None:
        """Hand free slots to the waiters that want them, in line order."""
        for waiter in list(self._line):
            host = self._pick(waiter)
            if host is not None:
                self._line.remove(waiter)
                self._busy[host] += 1
                waiter.host = host
                waiter.granted = True
                waiter.event.set()

    def _release_on(self, host: str, duration: float) -> None:
        with self._lock:
            self._durations.append(duration)
            self._busy[host] -= 1
            self._dispatch()
            self._observe_all()

    def _observe_all(self) -> None:
        if self.observer is not None:
            waiting = len(self._line)
            for host, busy in self._busy.items():
                self.observer(host, busy, waiting)
