"""Several model hosts: what routing costs, and what a host's death loses.

Why these two: routing is per request (two hashes and a sort, a health check),
so its price must vanish in the noise of one host's CPU per request; and the
promise of failover is that a request that had not started streaming when its
host died still gets its reply from the other host.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from dataclasses import dataclass

from bench.figures_requests import CONCURRENCY, LoadRun, _wrk_run
from bench.harness import MODEL, Bench, interleaved, log
from bench.http_client import one_request
from bench.processes import HOST, FakeOllamaProcess, GunicornProcess
from bench.results import Row
from bench.stats import median

# The host-loss run: streams of 20 tokens 50 ms apart (one second each), more
# of them than the two hosts' slots, and the second host killed mid-way.
LOSS_STREAMS = 48
LOSS_TOKENS = 20
LOSS_DELAY_MS = 50
KILL_AFTER = 1.5
LOSS_ENV = {
    "MAX_CONCURRENT_GENERATIONS": "8",
    "MAX_QUEUED_GENERATIONS": "200",
    "HOST_COOLDOWN_SECONDS": "5",
}


@dataclass(frozen=True)
class LossRun:
    requests: int
    completed: int
    cut_while_streaming: int
    lost_before_streaming: int


def _second_host(bench: Bench, name: str) -> FakeOllamaProcess:
    fake = FakeOllamaProcess(bench.log_dir, MODEL, name=name)
    fake.start()
    return fake


def _server(bench: Bench, hosts: str, extra: dict[str, str]) -> GunicornProcess:
    env = {**bench.gunicorn_env(), "OLLAMA_HOST": hosts, **extra}
    server = GunicornProcess(bench.root, bench.log_dir, env, name="gunicorn-hosts")
    server, seconds = bench.new_server(server)
    log(f"hosts: gunicorn with {hosts.count(',') + 1} host(s) up in {seconds:.2f} s")
    return server


def routing_cost(bench: Bench) -> list[Row]:
    """Non-stream CPU per request, 16 clients: two hosts against one."""
    if not bench.has_server:
        return []
    second = _second_host(bench, "fake_ollama_b")
    one = _server(bench, bench.fake.url, {})
    two = _server(bench, f"{bench.fake.url},{second.url}", {})
    seconds = bench.plan.wrk_seconds
    try:
        targets = [bench.piagent(one), bench.piagent(two)]
        for target in targets:
            _wrk_run(target, CONCURRENCY, 1)  # warm-up

        def run_two(_: int) -> LoadRun:
            return _wrk_run(targets[1], CONCURRENCY, seconds)

        def run_one(_: int) -> LoadRun:
            return _wrk_run(targets[0], CONCURRENCY, seconds)

        two_runs, one_runs = interleaved(
            bench, "hosts routing", run_two, run_one, other="one host"
        )
    finally:
        bench.stop_server(one)
        bench.stop_server(two)
        second.stop()
    cpu_two = median([r.cpu_per_request_ms for r in two_runs])
    cpu_one = median([r.cpu_per_request_ms for r in one_runs])
    ratio = cpu_two / cpu_one if cpu_one else None
    spread = [r.cpu_per_request_ms for r in one_runs]
    errors = sum(r.errors for r in two_runs + one_runs)
    return [
        Row(
            key="hosts_routing_cpu",
            figure="hosts",
            label="two model hosts vs one: non-stream CPU per request "
            "(limit column: one host)",
            unit="ms",
            target="≤ 1.05 × one host",
            measured=cpu_two,
            limit=cpu_one,
            checked=ratio,
            checked_unit="×",
            passed=None if ratio is None else ratio <= 1.05 and not errors,
            runs={
                "two hosts": [r.cpu_per_request_ms for r in two_runs],
                "one host": spread,
            },
            note=f"one host's runs ranged {min(spread):.3f}–{max(spread):.3f} ms"
            + (f"; wrk errors {errors}" if errors else ""),
        )
    ]


async def _stream(port: int, index: int) -> tuple[int, int]:
    """(status, tokens received) of one stream of a new conversation."""
    body = json.dumps(
        {
            "message": f"bench tokens={LOSS_TOKENS} delay_ms={LOSS_DELAY_MS}",
            "stream": True,
            "conversation_id": f"loss-{index}-{uuid.uuid4().hex[:8]}",
        }
    ).encode()
    response = await one_request(HOST, port, "POST", "/chat", body)
    return response.status, response.body.count(b"tok ")


async def _loss_load(port: int, victim: FakeOllamaProcess) -> list[tuple[int, int]]:
    tasks = [asyncio.create_task(_stream(port, i)) for i in range(LOSS_STREAMS)]
    await asyncio.sleep(KILL_AFTER)
    victim.stop(signal.SIGKILL, grace=0)
    return list(await asyncio.gather(*tasks))


def _loss_run(bench: Bench, index: int) -> LossRun:
    victim = _second_host(bench, f"fake_ollama_victim_{index}")
    server = _server(bench, f"{bench.fake.url},{victim.url}", LOSS_ENV)
    try:
        outcomes = asyncio.run(_loss_load(server.port, victim))
    finally:
        bench.stop_server(server)
        victim.stop()
    completed = sum(1 for s, n in outcomes if s == 200 and n == LOSS_TOKENS)
    cut = sum(1 for s, n in outcomes if s == 200 and 0 < n < LOSS_TOKENS)
    return LossRun(len(outcomes), completed, cut, len(outcomes) - completed - cut)


def host_loss(bench: Bench) -> list[Row]:
    """48 one-second streams over two hosts (8 slots each), the second host
    killed (SIGKILL) after 1.5 s: requests lost that had not started streaming."""
    if not bench.has_server:
        return []
    runs = []
    for index in range(bench.plan.runs):
        log(f"hosts loss: run {index + 1}/{bench.plan.runs}")
        runs.append(_loss_run(bench, index))
    lost = max(r.lost_before_streaming for r in runs)
    cut = [r.cut_while_streaming for r in runs]
    return [
        Row(
            key="hosts_lost_requests",
            figure="hosts",
            label="a host killed under load: requests lost before streaming "
            "(worst run)",
            unit="",
            target="0",
            measured=lost,
            checked=lost,
            passed=lost == 0,
            runs={
                "lost": [r.lost_before_streaming for r in runs],
                "cut": cut,
                "completed": [r.completed for r in runs],
            },
            note=f"{LOSS_STREAMS} streams a run; cut while streaming (the client "
            f"had tokens, as the rules say): {cut}; completed: "
            f"{[r.completed for r in runs]}",
        )
    ]


def hosts(bench: Bench) -> list[Row]:
    return routing_cost(bench) + host_loss(bench)
