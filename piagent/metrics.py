"""Prometheus metrics (METRICS=true), kept by prometheus_client.

Imported only when metrics are on: prometheus_client is about 1.5 MB of RSS
in each process. Under gunicorn every worker writes its values to files in
PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py makes a fresh one at start and
tells prometheus_client about a worker that exits), and whichever worker
answers a scrape reads them all, so WORKERS>1 reports one set. Without that
directory (an app in one process, the tests) the values live in this process.

Names follow Prometheus' conventions: a `piagent_` prefix, base units in the
name (seconds), `_total` on counters. docs/metrics.md lists them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder

if TYPE_CHECKING:
    from piagent.stats import TurnStats

# prometheus_client's own variable, which it reads itself; gunicorn.conf.py
# sets it for the workers when METRICS=true.
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

# Seconds: a warm Pi answers in about a second, a cold one loads the model
# first (tens of seconds), and MODEL_TIMEOUT defaults to 300.
FIRST_TOKEN_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160, 300)
DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 600, 900)

# What every metric is called, with its kind, for the docs and the tests.
NAMES = {
    "piagent_http_requests_total": "counter",
    "piagent_generations_in_flight": "gauge",
    "piagent_generations_waiting": "gauge",
    "piagent_time_to_first_token_seconds": "histogram",
    "piagent_generation_duration_seconds": "histogram",
    "piagent_prompt_tokens_total": "counter",
    "piagent_cached_prompt_tokens_total": "counter",
    "piagent_reply_tokens_total": "counter",
    "piagent_upstream_errors_total": "counter",
    "piagent_host_up": "gauge",
    "piagent_conversations_stored": "gauge",
}


class Metrics:
    """Every metric piagent keeps; one per process (prometheus_client refuses
    to register a name twice), see `metrics()`."""

    def __init__(self) -> None:
        # The `_created` series double every counter's lines, and multiprocess
        # mode has none: one process and gunicorn look the same without them.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped there
        self.multiprocess = bool(os.environ.get(MULTIPROC_DIR))
        # Under gunicorn the values are the files; a registry of their own
        # collects them at each scrape. In one process they are registered here.
        self._registry = None if self.multiprocess else CollectorRegistry()
        reg: dict[str, Any] = {"registry": self._registry}
        self.requests = Counter(
            "piagent_http_requests",
            "HTTP requests answered, by endpoint (route) and status.",
            ["endpoint", "status"],
            **reg,
        )
        self.in_flight = Gauge(
            "piagent_generations_in_flight",
            "Generations talking to the model now, per model host.",
            ["host"],
            multiprocess_mode="livesum",
            **reg,
        )
        self.waiting = Gauge(
            "piagent_generations_waiting",
            "Requests waiting in line for a generation slot.",
            multiprocess_mode="livesum",
            **reg,
        )
        self.first_token = Histogram(
            "piagent_time_to_first_token_seconds",
            "Seconds from taking a request to the model's first token, waiting "
            "in line included.",
            ["model"],
            buckets=FIRST_TOKEN_BUCKETS,
            **reg,
        )
        self.duration = Histogram(
            "piagent_generation_duration_seconds",
            "Seconds from taking a request to the end of its reply.",
            ["model"],
            buckets=DURATION_BUCKETS,
            **reg,
        )
        self.prompt_tokens = Counter(
            "piagent_prompt_tokens",
            "Prompt tokens the model server counted, its cache's included.",
            ["model"],
            **reg,
        )
        self.cached_tokens = Counter(
            "piagent_cached_prompt_tokens",
            "Prompt tokens the model server took from its prompt cache.",
            ["model"],
            **reg,
        )
        self.reply_tokens = Counter(
            "piagent_reply_tokens",
            "Reply tokens the model produced.",
            ["model"],
            **reg,
        )
        self.upstream_errors = Counter(
            "piagent_upstream_errors",
            "Failures of the model server, by kind (unreachable, timeout, busy, "
            "model_missing, failed, stream_broken, stalled, deadline).",
            ["kind"],
            **reg,
        )
        self.host_up = Gauge(
            "piagent_host_up",
            "1 while a model host is taken as healthy, 0 while it is left out.",
            ["host"],
            multiprocess_mode="livemostrecent",
            **reg,
        )
        self.conversations = Gauge(
            "piagent_conversations_stored",
            "Conversations in memory (a shared store's count; with the "
            "in-process store and several workers, the largest worker's).",
            multiprocess_mode="livemax",
            **reg,
        )

    # --- Recording ---------------------------------------------------------

    def request(self, endpoint: str, status: int) -> None:
        self.requests.labels(endpoint, str(status)).inc()

    def turn(self, model: str, stats: TurnStats) -> None:
        """A finished (or failed) turn's times and token counts."""
        started, first = stats.started_at, stats.first_token_at
        if started is not None and first is not None:
            self.first_token.labels(model).observe(max(first - started, 0.0))
            if stats.ended_at is not None:
                self.duration.labels(model).observe(max(stats.ended_at - started, 0.0))
        if stats.prompt_tokens:
            self.prompt_tokens.labels(model).inc(stats.prompt_tokens)
        if stats.cached_prompt_tokens:
            self.cached_tokens.labels(model).inc(stats.cached_prompt_tokens)
        if stats.reply_tokens:
            self.reply_tokens.labels(model).inc(stats.reply_tokens)

    def upstream_error(self, kind: str) -> None:
        self.upstream_errors.labels(kind).inc()

    def host(self, host: str, up: bool) -> None:
        self.host_up.labels(host).set(1 if up else 0)

    def queue(self, host: str, active: int, waiting: int) -> None:
        self.in_flight.labels(host).set(active)
        self.waiting.set(waiting)

    def stored(self, count: int) -> None:
        self.conversations.set(count)

    # --- Exposition --------------------------------------------------------

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The text a scrape gets, in the format its Accept header prefers."""
        if self._registry is not None:
            registry = self._registry
        else:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped in prometheus_client
        encoder, content_type = choose_encoder(accept or "")
        return encoder(registry), content_type


_metrics: Metrics | None = None


def metrics() -> Metrics:
    """This process's metrics, made on first use."""
    global _metrics
    if _metrics is None:
        _metrics = Metrics()
    return _metrics
