"""Many simultaneous slow streams: errors, completion, first byte, memory.

Why: on a Pi the model is slow, so streams pile up; one gevent worker must hold
1,000 of them without errors, without slowing the schedule, and in a memory
budget, and each extra open stream must cost little (the RSS slope).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import psutil

from bench.harness import Bench, Target, interleaved, log
from bench.http_client import simultaneous
from bench.processes import ProcessTree, RssSampler, listen_overflows
from bench.results import Row
from bench.stats import median, percentile

SMALL, LARGE = 100, 1000
DELAY_MS = 50
MB = 1e6


@dataclass(frozen=True)
class CrowdRun:
    errors: int
    completion_s: float
    ttfb_p99_s: float
    peak_rss: int
    overflows: int  # listen-queue overflows during the run (SYN retried ~1 s later)
    cpu_share: dict[str, float]  # CPU seconds per wall second, by process


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _crowd(
    bench: Bench, target: Target, tree: ProcessTree, count: int, tokens: int
) -> CrowdRun:
    body = target.body(f"bench tokens={tokens} delay_ms={DELAY_MS}")
    timeout = tokens * DELAY_MS / 1e3 + 30
    overflows_before = listen_overflows()
    fake, client = bench.fake.tree(), psutil.Process()
    cpu_before = tree.cpu_seconds(), fake.cpu_seconds(), _cpu_seconds(client)
    started = time.monotonic()
    with RssSampler(tree) as sampler:
        launched, responses = asyncio.run(
            simultaneous(
                "127.0.0.1", target.port, target.path, body, count, timeout=timeout
            )
        )
    wall = time.monotonic() - started
    cpu_after = tree.cpu_seconds(), fake.cpu_seconds(), _cpu_seconds(client)
    spent = [
        after - before for after, before in zip(cpu_after, cpu_before, strict=True)
    ]
    share = {"client": spent[2] / wall, "fake": spent[1] / wall}
    if not target.is_limit:
        share["piagent"] = spent[0] / wall
    good = [r for r in responses if r.ok and target.tokens_in(r) == tokens]
    errors = len(responses) - len(good)
    done = [r.done_at for r in good if r.done_at is not None]
    firsts = [r.ttfb for r in responses if r.ttfb is not None]
    if errors:
        good_ids = {id(r) for r in good}
        sample = next(r for r in responses if id(r) not in good_ids)
        log(f"crowd: {errors}/{count} failed on {target.name}, e.g. {sample.error}")
    return CrowdRun(
        errors=errors,
        completion_s=(max(done) - launched) if done else float("nan"),
        ttfb_p99_s=percentile(firsts, 99),
        peak_rss=sampler.peak,
        overflows=listen_overflows() - overflows_before,
        cpu_share=share,
    )


def crowd(bench: Bench) -> list[Row]:
    """Per run: a fresh piagent, 100 then 1,000 simultaneous streams."""
    tokens = bench.plan.crowd_tokens
    piagent_run = None
    if bench.has_server:

        def piagent_run(_: int) -> tuple[CrowdRun, CrowdRun]:
            server, _ = bench.new_server()
            try:
                target = bench.piagent(server)
                small = _crowd(bench, target, target.tree, SMALL, tokens)
                large = _crowd(bench, target, target.tree, LARGE, tokens)
            finally:
                bench.stop_server(server)
            return small, large

    def limit_run(_: int) -> tuple[CrowdRun, CrowdRun]:
        limit = bench.limit()
        return (
            _crowd(bench, limit, limit.tree, SMALL, tokens),
            _crowd(bench, limit, limit.tree, LARGE, tokens),
        )

    p_runs, l_runs = interleaved(bench, "concurrency", piagent_run, limit_run)
    p_large = [large for _, large in p_runs]
    l_large = [large for _, large in l_runs]
    slopes = [
        (large.peak_rss - small.peak_rss) / (LARGE - SMALL) / 1e3
        for small, large in p_runs
    ]
    has = bool(p_runs)
    errors = max(r.errors for r in p_large) if has else None
    completion = median([r.completion_s for r in p_large]) if has else None
    l_completion = median([r.completion_s for r in l_large])
    ttfb = median([r.ttfb_p99_s for r in p_large]) if has else None
    rss = median([r.peak_rss / MB for r in p_large]) if has else None
    slope = median(slopes) if has else None
    shape = f"{LARGE:,} streams × {tokens} tokens, {DELAY_MS} ms apart"
    quick_note = "" if tokens == 100 else f"{tokens} tokens per stream (--quick)"
    ratio = None if completion is None else completion / l_completion
    cpu_note = "; ".join(
        f"{side}: "
        + ", ".join(
            f"{name} {median([r.cpu_share[name] for r in runs]):.0%}"
            for name in runs[0].cpu_share
        )
        for side, runs in (("piagent runs", p_large), ("limit runs", l_large))
        if runs
    )
    overflow_note = (
        f"kernel listen-queue overflows per 1,000-stream run: piagent "
        f"{[r.overflows for r in p_large]}, limit {[r.overflows for r in l_large]} "
        "(each overflow delays that client's connect by ≥ 1 s: a SYN retry)"
    )
    return [
        Row(
            key="crowd_errors",
            figure="concurrency",
            label=f"{shape}: errors (worst run)",
            unit="count",
            target="0",
            measured=errors,
            limit=max(r.errors for r in l_large),
            checked=errors,
            passed=None if errors is None else errors == 0,
            runs={
                "piagent": [r.errors for r in p_large],
                "limit": [r.errors for r in l_large],
            },
            note=quick_note,
        ),
        Row(
            key="crowd_completion",
            figure="concurrency",
            label=f"{LARGE:,} streams: completion time (checked: ratio to limit)",
            unit="s",
            target="≤ 1.15 × limit",
            measured=completion,
            limit=l_completion,
            checked=ratio,
            checked_unit="×",
            passed=None if ratio is None else ratio <= 1.15,
            runs={
                "piagent": [r.completion_s for r in p_large],
                "limit": [r.completion_s for r in l_large],
            },
            note="CPU used during the 1,000-stream runs, as a share of one core "
            f"(the machine has {psutil.cpu_count()}): {cpu_note}",
        ),
        Row(
            key="crowd_ttfb_p99",
            figure="concurrency",
            label=f"{LARGE:,} streams: first byte p99 (from connect)",
            unit="s",
            target="≤ 1 s",
            measured=ttfb,
            limit=median([r.ttfb_p99_s for r in l_large]),
            checked=ttfb,
            passed=None if ttfb is None else ttfb <= 1.0,
            runs={
                "piagent": [r.ttfb_p99_s for r in p_large],
                "limit": [r.ttfb_p99_s for r in l_large],
            },
            note=overflow_note,
        ),
        Row(
            key="crowd_peak_rss",
            figure="concurrency",
            label=f"{LARGE:,} streams: peak RSS of the process tree",
            unit="MB",
            target="≤ 130 MB",
            measured=rss,
            checked=rss,
            passed=None if rss is None else rss <= 130,
            runs={"piagent": [r.peak_rss / MB for r in p_large]},
            note="MB = 10^6 bytes; RSS summed over master + worker (shared pages "
            "counted twice, as the target defines it)",
        ),
        Row(
            key="crowd_rss_per_stream",
            figure="concurrency",
            label=f"RSS growth per extra open stream ({SMALL} → {LARGE:,})",
            unit="KB",
            target="≤ 60 KB",
            measured=slope,
            checked=slope,
            passed=None if slope is None else slope <= 60,
            runs={"piagent": slopes},
            note="(peak RSS at 1,000 streams − peak at 100) ÷ 900, same fresh server; "
            "KB = 1,000 bytes",
        ),
    ]
