"""Stream figures: first byte, CPU per token, token spacing, client disconnect.

Why these four: they are what a person watching tokens appear notices (first
byte, steady spacing), what a Pi's CPU pays per token, and whether a closed tab
stops the model (every token generated after it is wasted Pi time).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bench.harness import Bench, Target, interleaved, log, unique_id
from bench.http_client import HttpConnection, Response, one_request
from bench.results import Row
from bench.stats import gaps, median, percentile

# --- time to first byte ---------------------------------------------------------


def _ttfb_run(target: Target, requests: int) -> tuple[float, int]:
    """Median ms from request sent to first body byte, on one keep-alive
    connection (so connecting is not part of it); and the failures."""

    async def go() -> list[Response]:
        connection = HttpConnection("127.0.0.1", target.port)
        body = target.body("bench tokens=200 delay_ms=0")
        responses = [
            await connection.request("POST", target.path, body) for _ in range(requests)
        ]
        connection.close()
        return responses

    responses = asyncio.run(go())
    good = [r for r in responses if r.ok and r.first_body_at is not None]
    firsts = [(r.first_body_at - r.sent) * 1e3 for r in good]  # type: ignore[operator]
    failures = sum(not r.ok or target.tokens_in(r) != 200 for r in responses)
    return median(firsts), failures


def first_byte(bench: Bench) -> list[Row]:
    """Stream of 200 tokens at 0 ms: first byte, piagent vs the fake directly."""
    count = bench.plan.ttfb_requests
    piagent_run = None
    if bench.has_server:
        target = bench.piagent(bench.shared_server())
        _ttfb_run(target, 10)  # warm-up

        def piagent_run(_: int) -> tuple[float, int]:
            return _ttfb_run(target, count)

    limit = bench.limit()
    p_runs, l_runs = interleaved(
        bench, "ttfb", piagent_run, lambda _: _ttfb_run(limit, count)
    )
    measured = median([r[0] for r in p_runs]) if p_runs else None
    limit_ms = median([r[0] for r in l_runs])
    added = None if measured is None else measured - limit_ms
    failures = sum(r[1] for r in p_runs)
    return [
        Row(
            key="stream_ttfb_added",
            figure="ttfb",
            label="stream, 200 tokens at 0 ms: first byte (checked: added over limit)",
            unit="ms",
            target="≤ +1.5 ms",
            measured=measured,
            limit=limit_ms,
            checked=added,
            checked_signed=True,
            passed=None if added is None else added <= 1.5 and not failures,
            runs={"piagent": [r[0] for r in p_runs], "limit": [r[0] for r in l_runs]},
            note=f"{failures} piagent streams failed or were incomplete"
            if failures
            else "",
        )
    ]


# --- CPU per forwarded token ----------------------------------------------------

LONG_TOKENS = 5000
LONG_CONCURRENCY = 2


def _token_cpu_run(target: Target, streams: int) -> tuple[float, int]:
    """µs of the target's CPU per token over ``streams`` 5,000-token streams."""
    body = target.body(f"bench tokens={LONG_TOKENS} delay_ms=0")

    async def client(count: int) -> list[Response]:
        connection = HttpConnection("127.0.0.1", target.port)
        out = [
            await connection.request("POST", target.path, body) for _ in range(count)
        ]
        connection.close()
        return out

    async def go() -> list[Response]:
        per_client = [streams // LONG_CONCURRENCY] * LONG_CONCURRENCY
        per_client[0] += streams % LONG_CONCURRENCY
        batches = await asyncio.gather(*(client(n) for n in per_client))
        return [r for batch in batches for r in batch]

    before = target.tree.cpu_seconds()
    responses = asyncio.run(go())
    cpu = target.tree.cpu_seconds() - before
    tokens = sum(target.tokens_in(r) for r in responses)
    incomplete = sum(not r.ok or target.tokens_in(r) != LONG_TOKENS for r in responses)
    return (cpu / tokens * 1e6 if tokens else float("nan")), incomplete


def token_cpu(bench: Bench) -> list[Row]:
    """Long streams at full speed: what relaying one token costs the server."""
    streams = bench.plan.token_streams
    piagent_run = None
    if bench.has_server:
        target = bench.piagent(bench.shared_server())
        _token_cpu_run(target, 1)  # warm-up

        def piagent_run(_: int) -> tuple[float, int]:
            return _token_cpu_run(target, streams)

    limit = bench.limit()
    p_runs, l_runs = interleaved(
        bench, "tokencpu", piagent_run, lambda _: _token_cpu_run(limit, streams)
    )
    measured = median([r[0] for r in p_runs]) if p_runs else None
    incomplete = sum(r[1] for r in p_runs)
    return [
        Row(
            key="stream_cpu_per_token",
            figure="tokencpu",
            label=f"stream, {LONG_TOKENS:,} tokens at 0 ms: server CPU per token",
            unit="µs",
            target="≤ 10 µs",
            measured=measured,
            limit=median([r[0] for r in l_runs]),
            checked=measured,
            passed=None if measured is None else measured <= 10 and not incomplete,
            runs={"piagent": [r[0] for r in p_runs], "limit": [r[0] for r in l_runs]},
            note=f"{incomplete} piagent streams incomplete" if incomplete else "",
        )
    ]


# --- spacing of tokens ----------------------------------------------------------


def _gaps_run(target: Target, tokens: int) -> tuple[float, float, bool]:
    """p50 and p99 ms between consecutive tokens as the client saw them."""
    body = target.body(f"bench tokens={tokens} delay_ms=20")
    response = asyncio.run(
        one_request("127.0.0.1", target.port, "POST", target.path, body)
    )
    arrivals = target.token_arrivals(response)
    spacing = [g * 1e3 for g in gaps(arrivals)]
    complete = response.ok and len(arrivals) == tokens
    return percentile(spacing, 50), percentile(spacing, 99), complete


def token_gaps(bench: Bench) -> list[Row]:
    """Tokens 20 ms apart must reach the client 20 ms apart (no batching)."""
    tokens = bench.plan.gap_tokens
    piagent_run = None
    if bench.has_server:
        target = bench.piagent(bench.shared_server())

        def piagent_run(_: int) -> tuple[float, float, bool]:
            return _gaps_run(target, tokens)

    limit = bench.limit()
    p_runs, l_runs = interleaved(
        bench, "gaps", piagent_run, lambda _: _gaps_run(limit, tokens)
    )
    p50 = median([r[0] for r in p_runs]) if p_runs else None
    p99 = median([r[1] for r in p_runs]) if p_runs else None
    complete = all(r[2] for r in p_runs)
    note = "" if complete else "some piagent streams were incomplete"
    if tokens != 200:
        note = (note + "; " if note else "") + f"{tokens} tokens per stream (--quick)"
    return [
        Row(
            key="stream_gap_p50",
            figure="gaps",
            label="stream, tokens 20 ms apart: client-seen gap p50",
            unit="ms",
            target="20 ± 1 ms",
            measured=p50,
            limit=median([r[0] for r in l_runs]),
            checked=p50,
            passed=None if p50 is None else abs(p50 - 20) <= 1 and complete,
            runs={"piagent": [r[0] for r in p_runs], "limit": [r[0] for r in l_runs]},
            note=note,
        ),
        Row(
            key="stream_gap_p99",
            figure="gaps",
            label="stream, tokens 20 ms apart: client-seen gap p99",
            unit="ms",
            target="≤ 25 ms",
            measured=p99,
            limit=median([r[1] for r in l_runs]),
            checked=p99,
            passed=None if p99 is None else p99 <= 25 and complete,
            runs={"piagent": [r[1] for r in p_runs], "limit": [r[1] for r in l_runs]},
        ),
    ]


# --- client disconnect ----------------------------------------------------------

DISCONNECT_AFTER_TOKENS = 3
DISCONNECT_TOKENS = 200  # 10 s at most if the upstream is never closed
OBSERVE_SECONDS = 0.6


@dataclass(frozen=True)
class DisconnectRun:
    after_close: int  # token lines the fake wrote after the client hung up
    seen_closed: bool  # the fake saw its connection closed (and stopped)
    notice_ms: float  # client hang-up -> fake saw the close


def _disconnect_run(bench: Bench, target: Target) -> DisconnectRun:
    record_id = unique_id(f"disc-{target.name}")
    body = target.body(f"bench tokens={DISCONNECT_TOKENS} delay_ms=50 id={record_id}")
    response = asyncio.run(
        one_request(
            "127.0.0.1",
            target.port,
            "POST",
            target.path,
            body,
            stop_after_chunks=DISCONNECT_AFTER_TOKENS,
        )
    )
    time.sleep(OBSERVE_SECONDS)
    record = bench.fake_record(record_id)
    if record is None or response.closed_at is None:
        log(f"disconnect: no record or no early close ({response.error})")
        return DisconnectRun(
            after_close=DISCONNECT_TOKENS, seen_closed=False, notice_ms=0
        )
    closed_at = response.closed_at
    after = sum(t > closed_at for t in record["write_times"])
    seen = record["stop"] == "peer-closed" and record["peer_closed_at"] is not None
    notice = (record["peer_closed_at"] - closed_at) * 1e3 if seen else float("nan")
    return DisconnectRun(after_close=after, seen_closed=seen, notice_ms=notice)


def disconnect(bench: Bench) -> list[Row]:
    """A client reads 3 tokens of a slow stream and leaves: does the model stop?"""
    piagent_run = None
    if bench.has_server:
        server = bench.shared_server()

        def piagent_run(_: int) -> DisconnectRun:
            return _disconnect_run(bench, bench.piagent(server))

    limit = bench.limit()
    p_runs, l_runs = interleaved(
        bench, "disconnect", piagent_run, lambda _: _disconnect_run(bench, limit)
    )
    after = max(r.after_close for r in p_runs) if p_runs else None
    seen_all = all(r.seen_closed for r in p_runs) if p_runs else None
    notice = median([r.notice_ms for r in p_runs]) if p_runs else None
    return [
        Row(
            key="disconnect_tokens_after_close",
            figure="disconnect",
            label="client disconnect: token lines the fake wrote after the close "
            "(worst run)",
            unit="count",
            target="≤ 2",
            measured=after,
            limit=max(r.after_close for r in l_runs),
            checked=after,
            passed=None if after is None else after <= 2,
            runs={
                "piagent": [r.after_close for r in p_runs],
                "limit": [r.after_close for r in l_runs],
            },
        ),
        Row(
            key="disconnect_upstream_closed",
            figure="disconnect",
            label="client disconnect: client close → fake saw upstream closed (median)",
            unit="ms",
            target="closed, by the next token",
            measured=notice,
            limit=median([r.notice_ms for r in l_runs]),
            checked=notice,
            passed=seen_all,
            runs={
                "piagent": [r.notice_ms for r in p_runs],
                "limit": [r.notice_ms for r in l_runs],
            },
            note="tokens are 50 ms apart, so a close seen within ~50 ms of the "
            "client's was seen by the fake's next token; the fake checks for a "
            "closed peer before every token and stops there"
            + (
                ""
                if seen_all is not False
                else "; in some piagent runs the fake never saw the close within "
                f"{OBSERVE_SECONDS} s"
            ),
        ),
    ]
