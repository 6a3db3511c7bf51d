"""Non-stream ``/chat`` figures, driven by wrk: CPU, throughput, latency.

Why wrk and one run for two rows: CPU per request is most honest at saturation
(fixed costs amortised, no idle wake-ups), which is exactly the 16-client
throughput run, so both rows come from the same window.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.harness import Bench, Target, interleaved, log
from bench.results import Row
from bench.stats import median
from bench.wrk_load import run_wrk

MESSAGE = "bench tokens=20"
CONCURRENCY = 16


@dataclass(frozen=True)
class LoadRun:
    rps: float
    cpu_per_request_ms: float
    p50_ms: float
    errors: int


def _wrk_run(target: Target, connections: int, seconds: int) -> LoadRun:
    before = target.tree.cpu_seconds()
    result = run_wrk(
        target.port,
        target.path,
        target.body(MESSAGE, stream=False),
        connections=connections,
        seconds=seconds,
    )
    cpu = target.tree.cpu_seconds() - before
    return LoadRun(
        rps=result.rps,
        cpu_per_request_ms=cpu / result.requests * 1e3 if result.requests else 0.0,
        p50_ms=result.p50_us / 1e3,
        errors=result.errors,
    )


def _errors_note(piagent: list[LoadRun], limit: list[LoadRun]) -> str:
    bad = sum(r.errors for r in piagent), sum(r.errors for r in limit)
    return "" if bad == (0, 0) else f"wrk errors: piagent {bad[0]}, limit {bad[1]}"


def throughput_and_cpu(bench: Bench) -> list[Row]:
    """16 keep-alive clients, 20-token replies: requests/s and CPU per request."""
    seconds = bench.plan.wrk_seconds
    piagent_run = None
    if bench.has_server:
        target = bench.piagent(bench.shared_server())
        log("nonstream: warm-up")
        _wrk_run(target, CONCURRENCY, 1)

        def piagent_run(_: int) -> LoadRun:
            return _wrk_run(target, CONCURRENCY, seconds)

    limit = bench.limit()
    p_runs, l_runs = interleaved(
        bench,
        "nonstream",
        piagent_run,
        lambda _: _wrk_run(limit, CONCURRENCY, seconds),
    )
    note = _errors_note(p_runs, l_runs)
    cpu = median([r.cpu_per_request_ms for r in p_runs]) if p_runs else None
    rps = median([r.rps for r in p_runs]) if p_runs else None
    errors_ok = not any(r.errors for r in p_runs)
    return [
        Row(
            key="nonstream_cpu_per_request",
            figure="nonstream",
            label="non-stream /chat, 20 tokens: server CPU per request",
            unit="ms",
            target="≤ 0.8 ms",
            measured=cpu,
            limit=median([r.cpu_per_request_ms for r in l_runs]),
            checked=cpu,
            passed=None if cpu is None else cpu <= 0.8 and errors_ok,
            runs={
                "piagent": [r.cpu_per_request_ms for r in p_runs],
                "limit": [r.cpu_per_request_ms for r in l_runs],
            },
            note=note,
        ),
        Row(
            key="nonstream_throughput",
            figure="nonstream",
            label=f"non-stream throughput, {CONCURRENCY} clients",
            unit="req/s",
            target="≥ 1,100 req/s",
            measured=rps,
            limit=median([r.rps for r in l_runs]),
            checked=rps,
            passed=None if rps is None else rps >= 1100 and errors_ok,
            runs={
                "piagent": [r.rps for r in p_runs],
                "limit": [r.rps for r in l_runs],
            },
        ),
    ]


def latency_one_client(bench: Bench) -> list[Row]:
    """One client, back to back: what piagent adds to each request's latency."""
    seconds = bench.plan.latency_seconds
    piagent_run = None
    if bench.has_server:
        target = bench.piagent(bench.shared_server())

        def piagent_run(_: int) -> LoadRun:
            return _wrk_run(target, 1, seconds)

    limit = bench.limit()
    p_runs, l_runs = interleaved(
        bench, "latency", piagent_run, lambda _: _wrk_run(limit, 1, seconds)
    )
    measured = median([r.p50_ms for r in p_runs]) if p_runs else None
    limit_p50 = median([r.p50_ms for r in l_runs])
    added = None if measured is None else measured - limit_p50
    return [
        Row(
            key="nonstream_latency_added",
            figure="latency",
            label="non-stream p50 latency, 1 client (checked: added over limit)",
            unit="ms",
            target="≤ +1.0 ms",
            measured=measured,
            limit=limit_p50,
            checked=added,
            checked_signed=True,
            passed=None if added is None else added <= 1.0,
            runs={
                "piagent": [r.p50_ms for r in p_runs],
                "limit": [r.p50_ms for r in l_runs],
            },
            note=_errors_note(p_runs, l_runs),
        )
    ]
