"""The shared machinery of a benchmark run: plan, processes, the two targets.

Why "targets": every figure is measured twice, through piagent and straight to
the fake Ollama (the limit), with the same messages. A ``Target`` hides the
difference (path, body shape, which process tree to charge CPU to) so a figure
is written once and run against both.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from bench.http_client import Response
from bench.processes import (
    FakeOllamaProcess,
    GunicornProcess,
    ProcessTree,
    http_get,
)
from bench.sections import Section

T = TypeVar("T")
MODEL = "bench-model"
# The guards a Pi needs would turn a load test away: one generation at a time
# with 4 waiting (the rest get 503) and 30 chats a minute per client (429). The
# bench lifts them so every figure measures the relaying itself; the queue
# still runs (every request takes and frees a slot), the rate limiter does not.
LOAD_TEST_ENV = {
    "MAX_CONCURRENT_GENERATIONS": "2000",
    "MAX_QUEUED_GENERATIONS": "0",
    "RATE_LIMIT_CHAT": "",
    "RATE_LIMIT_DEFAULT": "",
}
TOKEN = b"tok "
_STARTED = time.monotonic()


def log(message: str) -> None:
    """Progress on stderr, so stdout stays the Markdown table."""
    print(
        f"[{time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True
    )


@dataclass(frozen=True)
class Plan:
    """How long or how many, per figure; ``--quick`` shortens all of them."""

    runs: int
    wrk_seconds: int
    latency_seconds: int
    ttfb_requests: int
    token_streams: int
    gap_tokens: int
    crowd_tokens: int
    leak_requests: int
    store_ops: int
    leak_runs: int = 0  # runs that also send the requests; 0 means all


FULL = Plan(
    runs=5,
    wrk_seconds=5,
    latency_seconds=3,
    ttfb_requests=200,
    token_streams=20,
    gap_tokens=200,
    crowd_tokens=100,
    leak_requests=10_000,
    store_ops=100_000,
)
QUICK = Plan(
    runs=3,
    wrk_seconds=2,
    latency_seconds=1,
    ttfb_requests=60,
    token_streams=8,
    gap_tokens=100,
    crowd_tokens=100,
    leak_requests=10_000,
    store_ops=50_000,
    leak_runs=1,
)


@dataclass
class Target:
    """Where one side of a figure sends its load, and whose CPU it charges."""

    name: str  # "piagent" or "limit"
    port: int
    path: str
    tree: ProcessTree
    model: str = MODEL

    @property
    def is_limit(self) -> bool:
        return self.name == "limit"

    def body(self, message: str, stream: bool = True) -> bytes:
        """piagent's request, or the request piagent itself sends to Ollama."""
        if self.is_limit:
            request = {
                "model": self.model,
                "messages": [{"role": "user", "content": message}],
                "stream": True,
            }
        else:
            request = {"message": message, "stream": stream}
        return json.dumps(request).encode()

    def tokens_in(self, response: Response) -> int:
        """Tokens a response carried: piagent relays text, the fake sends NDJSON."""
        body = response.body
        if self.is_limit:
            return body.count(b'"content":"' + TOKEN + b'"')
        if response.headers.get("content-type", "").startswith("application/json"):
            try:
                body = json.loads(body)["reply"].encode()
            except (ValueError, KeyError, TypeError):
                return 0
        return body.count(TOKEN)

    def token_arrivals(self, response: Response) -> list[float]:
        """Arrival time of each token, from each chunk's time and size.

        The fake sends one NDJSON line per chunk; piagent sends text, and a chunk
        carrying two tokens gives both the same time, which is what shows batching.
        """
        if self.is_limit:
            return [
                at
                for at, part in zip(
                    response.chunk_times, response.body_parts, strict=False
                )
                if b'"done":false' in part
            ]
        arrivals: list[float] = []
        received = 0
        for at, size in zip(response.chunk_times, response.chunk_sizes, strict=False):
            received += size
            arrivals.extend([at] * (received // len(TOKEN) - len(arrivals)))
        return arrivals


@dataclass
class Bench:
    """One benchmark run: the fake, the gunicorns we start, and what went wrong."""

    root: Path
    plan: Plan
    log_dir: Path
    fake: FakeOllamaProcess
    extra_env: dict[str, str] = field(default_factory=dict)
    server_missing: str | None = None
    warnings: list[str] = field(default_factory=list)
    # Results kept in RESULTS.md as sections of their own (bench.sections).
    sections: list[Section] = field(default_factory=list)
    _shared: GunicornProcess | None = None
    _servers: list[GunicornProcess] = field(default_factory=list)

    @property
    def has_server(self) -> bool:
        return self.server_missing is None

    def gunicorn_env(self) -> dict[str, str]:
        """The environment the benchmark gives piagent, plus LOAD_TEST_ENV."""
        return {
            "WORKERS": "1",
            "OLLAMA_HOST": self.fake.url,
            "OLLAMA_MODEL_GENERAL": MODEL,
            "ENABLE_MEMORY": "true",
            "PYTHONUNBUFFERED": "1",
            **LOAD_TEST_ENV,
            **self.extra_env,
        }

    def new_server(
        self, server: GunicornProcess | None = None
    ) -> tuple[GunicornProcess, float]:
        """A fresh gunicorn + piagent (or ``server``, not yet started); returns
        it and its seconds to healthy."""
        if server is None:
            server = GunicornProcess(self.root, self.log_dir, self.gunicorn_env())
        self._servers.append(server)
        server.start()
        try:
            seconds = server.wait_healthy()
        except RuntimeError:
            server.stop()
            raise
        return server, seconds

    def stop_server(self, server: GunicornProcess) -> None:
        server.stop()
        if server in self._servers:
            self._servers.remove(server)

    def shared_server(self) -> GunicornProcess:
        """One long-lived server for the figures that do not need a fresh one."""
        if self._shared is None:
            self._shared, seconds = self.new_server()
            log(f"shared gunicorn up on :{self._shared.port} in {seconds:.2f} s")
        return self._shared

    def piagent(self, server: GunicornProcess) -> Target:
        return Target("piagent", server.port, "/chat", server.tree())

    def limit(self) -> Target:
        return Target("limit", self.fake.port, "/api/chat", self.fake.tree())

    def fake_record(self, record_id: str) -> dict | None:
        status, body = http_get(self.fake.port, f"/_stats?id={record_id}")
        if status != 200:
            return None
        return json.loads(body)["records"].get(record_id)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log(f"WARNING: {message}")

    def close(self) -> None:
        for server in list(self._servers):
            server.stop()
        self._servers.clear()
        self._shared = None
        self.fake.stop()


def interleaved(
    bench: Bench,
    name: str,
    piagent_run: Callable[[int], T] | None,
    limit_run: Callable[[int], T],
    other: str = "limit",
) -> tuple[list[T], list[T]]:
    """piagent run, limit run, piagent run, ...: both sides see the same noise.

    ``piagent_run`` is None when there is no server: only the limit is measured.
    ``other`` names the second side in the progress lines.
    """
    piagent_results: list[T] = []
    limit_results: list[T] = []
    for index in range(bench.plan.runs):
        if piagent_run is not None:
            log(f"{name}: piagent run {index + 1}/{bench.plan.runs}")
            piagent_results.append(piagent_run(index))
        log(f"{name}: {other} run {index + 1}/{bench.plan.runs}")
        limit_results.append(limit_run(index))
    return piagent_results, limit_results


def unique_id(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{time.monotonic_ns()}"
