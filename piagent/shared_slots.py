"""Generation slots shared by every process through Redis (STATE_BACKEND=redis).

A counting semaphore with leases ("Redis in Action" §6.3): per model host, a
sorted set of slot holders scored by the time their lease ends. One Lua script
prunes expired holders, counts, and admits atomically, so two workers (or two
machines) can never both take the last slot. A holder's lease (SLOT_LEASE_SECONDS)
is renewed by one thread (a greenlet under gevent) per process while its
generation runs, and the slot is given back on every exit path; a worker killed
with SIGKILL stops renewing, and its slots are free once their leases end.

The waiting line is a sorted set of tickets by arrival (a Redis counter), with
each ticket's own lease, renewed by its waiter's polls: a waiter may take a
slot on its host only when fewer requests ahead of it want that host than the
host has free slots, so the line is first come, first served per host across
processes. Its tolerances: arrival is when the request reached Redis; a waiter
notices a freed slot at its next poll (POLL_SECONDS); a waiter whose process
died holds its place until its ticket's lease ends. Retry-After comes from
the recent generation times of every process (a Redis list).

Redis unreachable: no slot is given (StateUnavailable, a 503 with Retry-After),
so the cap fails closed. A Redis that lost its state (restarted empty) admits
nobody for one lease, time for the generations still running to re-register
through their renewals, so a restart never lets more generations in.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from piagent.errors import ClientGone, QueueFull, StateUnavailable
from piagent.generation_queue import (
    FIRST_GUESS_SECONDS,
    POLL_SECONDS,
    WINDOW,
    GenerationQueue,
    Route,
    Slot,
    always_present,
    estimate_wait,
)
from piagent.slot_scripts import ACQUIRE, RELEASE, RENEW

log = logging.getLogger("piagent")
PREFIX = "piagent:slots:"


class SharedSlot(Slot):
    """A leased slot; `release()` gives it back at once (safe to call twice)."""

    def __init__(
        self, queue: SharedQueue, holder: str, host: str, route: Route | None
    ) -> None:
        super().__init__(queue, queue.clock(), host)
        self._shared = queue
        self.holder = holder
        self.route = route
        self.movable = route is not None and len(queue.hosts) > 1

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._shared._give(self, self._shared.clock() - self.started)

    def move(self, client_present: Callable[[], bool] = always_present) -> None:
        """Give this host's slot back (nothing recorded) and queue for the next."""
        failed = self.host
        self._shared._give(self, None)
        self._released = True  # until the next host's slot is held
        self.holder, self.host = self._shared._take(
            client_present, self.route, avoid=failed
        )
        self._released = False


class SharedQueue(GenerationQueue):
    """The generation queue's interface over Redis leases; one per process."""

    def __init__(
        self,
        url: str,
        hosts: Sequence[str],
        max_concurrent: int,
        max_queued: int,
        max_seconds: float,
        lease_seconds: float = 5.0,
        timeout: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        poll_seconds: float = POLL_SECONDS,
        read_horizon: float = 0.0,
        max_wait: float = float("inf"),
        prefix: str = PREFIX,
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
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            decode_responses=True,
        )
        self.lease_ms = max(1, round(lease_seconds * 1000))
        self._prefix = prefix
        self._line, self._tickets = prefix + "line", prefix + "tickets"
        self._wants, self._arrivals = prefix + "wants", prefix + "arrivals"
        self._epoch, self._recent = prefix + "epoch", prefix + "durations"
        self._acquire = self.client.register_script(ACQUIRE)
        self._renew = self.client.register_script(RENEW)
        self._give_back = self.client.register_script(RELEASE)
        # Held here: holder id -> host; renewed together by one thread.
        self._held: dict[str, str] = {}
        self._local_waiting = 0
        self._renewer: threading.Thread | None = None
        self._anywhere = Route(lambda avoid: list(self.hosts), spread=True)

    def describe(self) -> str:
        kwargs = self.client.connection_pool.connection_kwargs
        if "path" in kwargs:
            return f"Redis at unix:{kwargs['path']}"
        return f"Redis at {kwargs['host']}:{kwargs['port']}"

    def holders(self, host: str | None = None) -> int:
        """Slots held now on `host` (every host's by default), by any process."""
        with self._mapped():
            pipe = self.client.pipeline(transaction=False)
            for name in [host] if host else self.hosts:
                pipe.zcard(self._holders(name))
            return sum(int(count) for count in pipe.execute())

    def ping(self) -> None:
        with self._mapped():
            self.client.ping()

    @property
    def active(self) -> int:
        return len(self._held)

    @property
    def waiting(self) -> int:
        return self._local_waiting

    def retry_after(self, position: int) -> int:
        return estimate_wait(
            self._recent_durations(),
            position,
            self.max_concurrent * len(self.hosts),
            FIRST_GUESS_SECONDS,
        )

    # --- Taking and giving back ------------------------------------------------

    def acquire(
        self,
        client_present: Callable[[], bool] = always_present,
        route: Route | None = None,
    ) -> Slot:
        holder, host = self._take(client_present, route)
        return SharedSlot(self, holder, host, route)

    def _take(
        self,
        client_present: Callable[[], bool],
        route: Route | None,
        avoid: str | None = None,
    ) -> tuple[str, str]:
        """(holder id, host) of a slot taken now or after waiting in line."""
        holder = uuid.uuid4().hex
        host = self._host(route, avoid)
        admitted, place = self._ask(holder, host)
        if admitted == 1:
            return self._hold(holder, host), host
        if admitted == -2:
            seconds = max(1, math.ceil(place / 1000))
            raise QueueFull(
                "generation slots are counted afresh after Redis started empty "
                f"(one lease, for running generations to re-register); try again "
                f"in about {seconds} s",
                retry_after=seconds,
            )
        if admitted == -1:
            seconds = self.retry_after(place)
            raise QueueFull(
                f"{self.max_concurrent} generation(s) running on each of "
                f"{len(self.hosts)} model host(s) and {self.max_queued} waiting, "
                f"counted across every piagent process; try again in about "
                f"{seconds} s",
                retry_after=seconds,
            )
        self._waiting_changed(+1)
        give_up_at = self.clock() + self.max_wait
        try:
            while True:
                time.sleep(self._poll)
                if not client_present():
                    raise ClientGone("the client left while waiting for the model")
                if self.clock() >= give_up_at:
                    raise self._waited_too_long()
                host = self._host(route, avoid)
                admitted, _ = self._ask(holder, host)
                if admitted == 1:
                    return self._hold(holder, host), host
        except BaseException:
            self._leave(holder, host)
            raise
        finally:
            self._waiting_changed(-1)

    def _host(self, route: Route | None, avoid: str | None) -> str:
        if route is None:
            return self.host
        hosts = route.order(avoid)
        if not route.spread or len(hosts) == 1:
            return hosts[0]
        with self._mapped():
            pipe = self.client.pipeline(transaction=False)
            for host in hosts:
                pipe.zcard(self._holders(host))
            counts = pipe.execute()
        return hosts[counts.index(min(counts))]

    def _ask(self, holder: str, host: str) -> tuple[int, int]:
        keys = [
            self._holders(host),
            self._line,
            self._tickets,
            self._wants,
            self._arrivals,
            self._epoch,
        ]
        args: list[str | int] = [
            holder,
            self.max_concurrent,
            self.lease_ms,
            self.max_queued,
            host,
        ]
        with self._mapped():
            admitted, place = self._acquire(keys=keys, args=args)
        return int(admitted), int(place)

    def _hold(self, holder: str, host: str) -> str:
        with self._lock:
            self._held[holder] = host
            self._observe()
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew_loop, name="slot-leases", daemon=True
                )
                self._renewer.start()
        return holder

    def _give(self, slot: SharedSlot, duration: float | None) -> None:
        with self._lock:
            self._held.pop(slot.holder, None)
            self._observe()
        seconds = "" if duration is None else f"{duration:.3f}"
        args: list[str | int] = [slot.holder, seconds, WINDOW]
        try:
            with self._mapped():
                self._give_back(
                    keys=[self._holders(slot.host), self._recent], args=args
                )
        except StateUnavailable as exc:
            # Its lease ends by itself within SLOT_LEASE_SECONDS.
            log.warning("generation slot not given back now: %s", exc.detail)

    def _leave(self, holder: str, host: str) -> None:
        """Out of the line at once (and out of the host's holders, in case
        Redis admitted it as the answer was lost)."""
        try:
            with self._mapped():
                pipe = self.client.pipeline(transaction=True)
                pipe.zrem(self._line, holder)
                pipe.zrem(self._tickets, holder)
                pipe.hdel(self._wants, holder)
                pipe.zrem(self._holders(host), holder)
                pipe.execute()
        except StateUnavailable:
            pass  # the ticket's lease ends by itself

    def _renew_loop(self) -> None:
        """Renew every held lease, three times per lease."""
        every = self.lease_ms / 3000
        while True:
            time.sleep(every)
            with self._lock:
                held = list(self._held.items())
            if not held:
                continue
            keys = [self._holders(host) for _, host in held] + [self._epoch]
            try:
                with self._mapped():
                    self._renew(keys=keys, args=[self.lease_ms, *(h for h, _ in held)])
            except StateUnavailable as exc:
                log.warning("generation slot leases not renewed: %s", exc.detail)

    # --- Helpers ---------------------------------------------------------------

    def _recent_durations(self) -> list[float]:
        try:
            with self._mapped():
                raw: list[str] = self.client.lrange(  # type: ignore[assignment]  # sync client
                    self._recent, 0, WINDOW - 1
                )
            return [float(item) for item in raw]
        except (StateUnavailable, ValueError):
            return []

    def _holders(self, host: str) -> str:
        return f"{self._prefix}holders:{host}"

    def _waiting_changed(self, change: int) -> None:
        with self._lock:
            self._local_waiting += change
            self._observe()

    def _observe(self) -> None:
        if self.observer is not None:
            counts = dict.fromkeys(self.hosts, 0)
            for host in self._held.values():
                counts[host] = counts.get(host, 0) + 1
            for host, count in counts.items():
                self.observer(host, count, self._local_waiting)

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        """Redis failures (down, timeout) become one 503 that admits nobody."""
        try:
            yield
        except redis.RedisError as exc:
            raise StateUnavailable(
                f"generation slots cannot be counted ({self.describe()}: {exc}); "
                "try again shortly"
            ) from exc
