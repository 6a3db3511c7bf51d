"""Several model hosts behind one provider: rendezvous routing, health, failover.

Each conversation goes to one host, chosen by rendezvous (highest random
weight) hashing of its routing key over the healthy hosts that have the
agent's model: every host gets a weight from a hash of (host, key), the
heaviest wins. So a conversation keeps landing on the host whose prompt cache
holds it, and when a host goes away only its own conversations move (each to
its second heaviest), which a modulo hash would not give. Stateless requests
(no key) may go anywhere; the generation queue picks the least busy.

A host that refuses, times out before its first token, answers 5xx or fails
before any text is down for a cooldown that doubles while it keeps failing;
one that lacks a model is left out for that model. A probe (`refresh`, every
HOST_PROBE_SECONDS in a background greenlet of each worker) asks every host
for its model list, which brings hosts back and learns their models.
With one host nothing is routed or left out: it behaves as that host's
provider alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from piagent.errors import ModelMissing, ProviderError
from piagent.providers.base import (
    ChatMessage,
    HostReport,
    ModelState,
    Options,
    Provider,
    Readiness,
    Reply,
    TokenStream,
    ToolOffer,
)
from piagent.providers.health import (
    HostState,
    ListsModels,
    error_kind,
    host_failure,
    listed,
    weight,
)

log = logging.getLogger("piagent")
T = TypeVar("T")

# Called with (host, up) whenever a host's health changes, and with
# (kind, None) for every upstream error; see piagent.metrics.
HostObserver = Callable[[str, bool], None]
ErrorObserver = Callable[[str], None]


class HostRouter:
    """The Provider protocol over one provider per host.

    The chat service routes a turn itself (`order` for its slot, `attempt` to
    run on the slot's host, moving it once on a host failure); the protocol's
    own `stream`/`complete` only complete the Provider protocol: they ask the
    first healthy host, without a slot or a retry. Warm-up uses `warm`.
    """

    def __init__(
        self,
        children: Sequence[Provider],
        urls: Sequence[str] | None = None,
        cooldown: float = 5.0,
        cooldown_max: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not children:
            raise ValueError("at least one host")
        self._children = list(children)
        self.urls = list(urls or [getattr(c, "host", "") for c in children])
        self._by_url = dict(zip(self.urls, self._children, strict=True))
        self._states = {url: HostState(url) for url in self.urls}
        self.single = len(self._children) == 1
        self._only = self._children[0]
        self.name = self._only.name
        self._cooldown = cooldown
        self._cooldown_max = cooldown_max
        self._clock = clock
        self._lock = threading.Lock()
        self.on_host: HostObserver | None = None
        self.on_error: ErrorObserver | None = None

    def __len__(self) -> int:
        return len(self.urls)

    # --- Routing ------------------------------------------------------------

    def order(self, key: str | None, model: str, avoid: str | None = None) -> list[str]:
        """Hosts for a request, best first: the healthy hosts that have `model`,
        by rendezvous weight for `key` (in configured order without a key),
        leaving out `avoid` (a host that just failed). When no host qualifies
        every host is returned in the same order, since a belief that all are
        down may be stale and the attempt says what is wrong."""
        if self.single:
            return self.urls
        ranked = self.urls
        if key is not None:
            ranked = sorted(ranked, key=lambda url: weight(url, key), reverse=True)
        now = self._clock()
        states = self._states
        good = [u for u in ranked if u != avoid and states[u].serves(model, now)]
        if good:
            return good
        return [u for u in ranked if u != avoid] or ranked

    def attempt(self, host: str, model: str, call: Callable[[Provider], T]) -> T:
        """`call(provider of host)`, recording how the host did: a success
        brings it back up, a host failure (see host_failure) takes it down."""
        child = self._only if self.single else self._by_url[host]
        try:
            result = call(child)
        except ProviderError as exc:
            self.failed(host, model, exc)
            raise
        state = self._states[host] if not self.single else self._states[self.urls[0]]
        if state.failures or state.reason is not None:
            self._mark_up(state, recovered=True)
        return result

    def failed(self, host: str, model: str, exc: ProviderError) -> bool:
        """Record a failure; whether it may be retried on another host."""
        observer = self.on_error
        if observer is not None:
            observer(error_kind(exc))
        if not host_failure(exc):
            return False
        if self.single:
            # Nothing to route around, so it is never left out; only what
            # is reported (piagent_host_up) says it failed.
            state = self._states[self.urls[0]]
            state.failures, state.reason = state.failures + 1, exc.detail
            if self.on_host is not None:
                self.on_host(state.url, False)
            return False
        state = self._states[host]
        if isinstance(exc, ModelMissing):
            with self._lock:
                state.missing.add(model)
            log.warning("model host %s lacks model %r: %s", host, model, exc.detail)
        else:
            self._mark_down(state, exc.detail)
        return True

    def up(self, host: str) -> bool:
        return self._states[host].up(self._clock())

    def _mark_down(self, state: HostState, reason: str) -> None:
        """Down for the cooldown, doubled for each failure in a row."""
        with self._lock:
            now = self._clock()
            was_up = state.up(now)
            seconds = min(
                self._cooldown * 2 ** min(state.failures, 30), self._cooldown_max
            )
            state.failures += 1
            state.down_until = now + seconds
            state.reason = reason
        # A warning when it goes down; while it stays down, the probe's
        # repeated failures are only worth a debug line.
        log.log(
            logging.WARNING if was_up else logging.DEBUG,
            "model host %s is down for %g s (failure %d in a row): %s",
            state.url,
            seconds,
            state.failures,
            reason,
        )
        if self.on_host is not None:
            self.on_host(state.url, False)

    def _mark_up(self, state: HostState, recovered: bool) -> None:
        """End the cooldown. Only a generation that got its first token
        (`recovered`) clears the count of failures in a row: a host that lists
        its models but fails every generation keeps doubling its cooldown."""
        with self._lock:
            was_down = state.reason is not None
            if recovered:
                state.failures = 0
            state.down_until = 0.0
            state.reason = None
        if was_down and not self.single:
            log.info("model host %s is back", state.url)
        if self.on_host is not None:
            self.on_host(state.url, True)

    # --- Probing --------------------------------------------------------------

    def refresh(
        self, models: Sequence[str], full: bool = False
    ) -> dict[str, Readiness]:
        """Ask every host for its models at once and update what is believed:
        a host that answers is up (its cooldown ends) and serves the models it
        lists; one that does not is down. One model list per host, or with
        `full` each host's whole readiness (which models are loaded too, for
        /ready). Never raises."""
        # Imported here: concurrent.futures is only needed by several hosts.
        from concurrent.futures import ThreadPoolExecutor

        wanted = sorted(set(models))
        ask = _readiness if full else _listing
        with ThreadPoolExecutor(max_workers=len(self._children)) as pool:
            found = list(pool.map(lambda c: ask(c, wanted), self._children))
        results = dict(zip(self.urls, found, strict=True))
        for url, readiness in results.items():
            state = self._states[url]
            if readiness.models or readiness.problem is None:
                pulled = frozenset(m for m, s in readiness.models.items() if s.pulled)
                with self._lock:
                    state.models = pulled
                    state.missing.clear()
                self._mark_up(state, recovered=False)
            else:
                self._mark_down(state, readiness.problem or "no answer")
        return results

    def start_probing(self, models: Sequence[str], every: float) -> threading.Thread:
        """Refresh every `every` seconds, in a daemon thread (a greenlet under
        gevent), for as long as the worker lives."""

        def loop() -> None:
            while True:
                time.sleep(every)
                try:
                    self.refresh(models)
                except Exception:  # the probe must outlive any surprise
                    log.exception("probing the model hosts failed")

        thread = threading.Thread(target=loop, name="host-probe", daemon=True)
        thread.start()
        return thread

    def states(self) -> list[HostState]:
        return [self._states[url] for url in self.urls]

    # --- The Provider protocol ------------------------------------------------

    def _first(self, model: str, call: Callable[[Provider], T]) -> T:
        return self.attempt(self.order(None, model)[0], model, call)

    def stream(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        options: Options | None = None,
        tools: ToolOffer | None = None,
    ) -> TokenStream:
        return self._first(model, lambda p: p.stream(model, messages, options, tools))

    def complete(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        options: Options | None = None,
        tools: ToolOffer | None = None,
    ) -> Reply:
        return self._first(model, lambda p: p.complete(model, messages, options, tools))

    def catalog(self, what: str, model: str | None = None) -> Any:
        """What /ollama lists, over every host: the models any host has
        ("tags") or holds in memory ("ps"), the first answer of a host that
        knows `model` ("show"). Hosts that are up are asked first; one that
        fails is skipped (the probe, not a listing, takes hosts down); a
        ProviderError only when none answered."""
        if self.single:
            return self._only.catalog(what, model)
        ranked = sorted(self.urls, key=lambda url: not self.up(url))
        merged: dict[str, Any] = {}
        failure: ProviderError | None = None
        answered = False
        for url in ranked:
            try:
                found = self._by_url[url].catalog(what, model)
            except ProviderError as exc:
                failure = failure or exc
                continue
            answered = True
            if what == "show":
                if found:
                    return found
                continue
            for name, entry in (found or {}).items():
                merged.setdefault(name, entry)
        if not answered and failure is not None:
            raise failure
        return merged

    def probe(self, models: Sequence[str]) -> list[str]:
        """Start-up warnings of every host (each names its host)."""
        problems: list[str] = []
        for child in self._children:
            problems.extend(child.probe(models))
        return problems

    def warm(self, model: str) -> None:
        """Load the model on every host that answers; ProviderError if none did."""
        errors: list[ProviderError] = []
        for url in self.urls:
            try:
                self.attempt(url, model, lambda p: p.warm(model))
            except ProviderError as exc:
                errors.append(exc)
        if len(errors) == len(self.urls):
            raise errors[0]

    def readiness(self, models: Sequence[str]) -> Readiness:
        """With one host, that host's readiness. With several: ready while
        every model is pulled on at least one healthy host; a model counts as
        pulled (loaded) when some healthy host has it pulled (loaded)."""
        if self.single:
            return self._only.readiness(models)
        results = self.refresh(models, full=True)
        now = self._clock()
        wanted = sorted(set(models))
        reports = []
        states: dict[str, ModelState] = {}
        for url in self.urls:
            state = self._states[url]
            up = state.up(now)
            serves = [m for m in wanted if up and state.serves(m, now)]
            reports.append(HostReport(url, up, serves, None if up else state.reason))
        for model in wanted:
            healthy = [results[r.url].models.get(model) for r in reports if r.up]
            states[model] = ModelState(
                pulled=any(s is not None and s.pulled for s in healthy),
                loaded=any(s is not None and s.loaded for s in healthy),
            )
        problems = [
            f"model {m!r} is on no healthy model host "
            f"({'; '.join(_why(results[url], m) for url in self.urls)})"
            for m, s in states.items()
            if not s.pulled
        ]
        return Readiness(states, "; ".join(problems) or None, tuple(reports))


def _why(readiness: Readiness, model: str) -> str:
    return readiness.problem or f"{model!r} is not listed there"


def _readiness(provider: Provider, models: list[str]) -> Readiness:
    try:
        return provider.readiness(models)
    except Exception as exc:  # a probe never raises
        return Readiness({}, problem=f"readiness check failed: {exc}")


def _listing(provider: Provider, models: list[str]) -> Readiness:
    """What a probe learns from one model list (never loaded: it does not ask);
    a provider without one is asked for its readiness instead."""
    if not isinstance(provider, ListsModels):
        return _readiness(provider, models)
    try:
        names = provider.models()
    except ProviderError as exc:
        return Readiness({}, problem=exc.detail)
    except Exception as exc:  # a probe never raises
        return Readiness({}, problem=f"model list failed: {exc}")
    return Readiness({m: ModelState(listed(m, names), False) for m in models})


__all__ = [
    "HostRouter",
    "HostState",
    "error_kind",
    "host_failure",
    "listed",
    "weight",
]
