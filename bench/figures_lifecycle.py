"""Start-up time and idle memory, before and after 10,000 requests.

Why fresh servers: start-up and idle RSS are properties of a new process, and a
leak only shows as growth from that baseline. Requests go without a
conversation id (as a new chat does), so the memory store fills up to its cap
along the way, which is part of what must stay bounded.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bench.harness import MODEL, Bench, interleaved, log
from bench.http_client import closed_loop
from bench.processes import FakeOllamaProcess, GunicornProcess, http_get
from bench.results import Row
from bench.stats import median

SETTLE_SECONDS = 1.0
CLIENTS = 16
MB = 1e6


@dataclass(frozen=True)
class LifeRun:
    startup_s: float
    idle_rss: int
    idle_pss: int
    after_rss: int | None  # None: this run skipped the requests (--quick)
    errors: int


def _server_run(
    bench: Bench, with_requests: bool, server: GunicornProcess | None = None
) -> LifeRun:
    """A fresh piagent (or ``server``): start-up, idle RSS and PSS, and RSS
    after the requests if ``with_requests``."""
    server, startup = bench.new_server(server)
    try:
        tree = server.tree()
        time.sleep(SETTLE_SECONDS)
        idle = tree.rss_bytes()
        idle_pss = tree.pss_bytes()
        if not with_requests:
            log(f"lifecycle: start {startup:.3f} s, idle {idle / MB:.1f} MB")
            return LifeRun(startup, idle, idle_pss, None, 0)
        target = bench.piagent(server)
        body = target.body("bench tokens=20", stream=False)
        responses = asyncio.run(
            closed_loop(
                "127.0.0.1",
                server.port,
                target.path,
                body,
                bench.plan.leak_requests,
                CLIENTS,
            )
        )
        errors = sum(not r.ok for r in responses)
        time.sleep(SETTLE_SECONDS)
        after = tree.rss_bytes()
    finally:
        bench.stop_server(server)
    log(
        f"lifecycle: start {startup:.3f} s, idle {idle / MB:.1f} MB, "
        f"after {len(responses):,} requests {after / MB:.1f} MB, {errors} errors"
    )
    return LifeRun(startup, idle, idle_pss, after, errors)


def _fake_startup(bench: Bench) -> float:
    """The limit's start-up: a fresh fake Ollama until ``GET /`` answers."""
    fake = FakeOllamaProcess(bench.log_dir, MODEL)
    started = time.monotonic()
    fake.start()
    try:
        while http_get(fake.port, "/")[0] != 200:
            time.sleep(0.005)
        return time.monotonic() - started
    finally:
        fake.stop()


def lifecycle(bench: Bench) -> list[Row]:
    """Start-up until /health, idle RSS after start and after the requests."""
    leak_runs = bench.plan.leak_runs or bench.plan.runs
    piagent_run = None
    if bench.has_server:

        def piagent_run(index: int) -> LifeRun:
            return _server_run(bench, with_requests=index < leak_runs)

    p_runs, l_runs = interleaved(
        bench, "lifecycle", piagent_run, lambda _: _fake_startup(bench)
    )
    has = bool(p_runs)
    startup = median([r.startup_s for r in p_runs]) if has else None
    idle = median([r.idle_rss / MB for r in p_runs]) if has else None
    afters = [r.after_rss / MB for r in p_runs if r.after_rss is not None]
    after = median(afters) if afters else None
    pss = median([r.idle_pss / MB for r in p_runs]) if has else None
    errors = sum(r.errors for r in p_runs)
    count = bench.plan.leak_requests
    return [
        Row(
            key="startup",
            figure="lifecycle",
            label="start-up until /health answers",
            unit="s",
            target="≤ 1.0 s",
            measured=startup,
            limit=median(l_runs),
            checked=startup,
            passed=None if startup is None else startup <= 1.0,
            runs={"piagent": [r.startup_s for r in p_runs], "limit": l_runs},
            note="from spawning gunicorn to the first 200 from GET /health, polled "
            "every 5 ms; the limit column is the fake Ollama's own start-up",
        ),
        Row(
            key="idle_rss_start",
            figure="lifecycle",
            label="idle RSS of master + worker after start",
            unit="MB",
            target="≤ 60 MB",
            measured=idle,
            checked=idle,
            passed=None if idle is None else idle <= 60,
            runs={"piagent": [r.idle_rss / MB for r in p_runs]},
            note=f"PSS (shared pages split between master and worker) summed: "
            f"{pss:.1f} MB"
            if pss is not None
            else "",
        ),
        Row(
            key="idle_rss_after_requests",
            figure="lifecycle",
            label=f"idle RSS after {count:,} non-stream requests",
            unit="MB",
            target="≤ 65 MB",
            measured=after,
            checked=after,
            passed=None if after is None else after <= 65 and not errors,
            runs={"piagent": afters},
            note=f"{len(afters)} run(s); {CLIENTS} keep-alive clients, "
            "new conversation per request, "
            f"{SETTLE_SECONDS:g} s settle before sampling"
            + (f"; {errors} requests failed" if errors else ""),
        ),
    ]
