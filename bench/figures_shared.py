"""STATE_BACKEND=redis against local: what a shared generation slot costs.

Why: with Redis every request takes its slot with one Lua script and gives it
back with another (two round trips), and a thread renews the leases; that is
paid on every generation, so it is measured the way the hot path is, on
non-stream requests: the latency one client sees, and piagent's CPU per
request at 16 clients (Redis's own CPU is in the note). Skipped, with a
warning, where redis-server is not installed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

from bench.figures_requests import CONCURRENCY, LoadRun, _wrk_run
from bench.harness import Bench, interleaved
from bench.http_client import one_request
from bench.processes import HOST, GunicornProcess, ProcessTree, free_port
from bench.results import Row
from bench.stats import median

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisProcess:
    """A throwaway redis-server on a free loopback port, saving nothing."""

    def __init__(self, bench: Bench) -> None:
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        log_path = bench.log_dir / "redis.log"
        with log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", HOST]
                + ["--save", "", "--appendonly", "no", "--dir", str(bench.log_dir)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, self.port), 0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def tree(self) -> ProcessTree:
        return ProcessTree(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def _server(bench: Bench, extra: dict[str, str]) -> GunicornProcess:
    env = {**bench.gunicorn_env(), **extra}
    server = GunicornProcess(bench.root, bench.log_dir, env, name="gunicorn-state")
    server, _ = bench.new_server(server)
    # A fresh Redis admits nobody for one lease (shared_slots), and the bench
    # lets nobody wait (MAX_QUEUED_GENERATIONS=0): ask until it answers.
    body = json.dumps({"message": "bench tokens=1", "stream": False}).encode()
    deadline = time.monotonic() + 10
    while True:
        response = asyncio.run(one_request(HOST, server.port, "POST", "/chat", body))
        if response.status == 200:
            return server
        if time.monotonic() > deadline:
            raise RuntimeError(f"warm-up request answered {response.status}")
        time.sleep(0.2)


def shared_slot(bench: Bench) -> list[Row]:
    """Non-stream /chat with STATE_BACKEND=redis vs local, interleaved."""
    if not bench.has_server:
        return []
    if not Path(REDIS_SERVER).is_file():
        bench.warn("shared: redis-server is not installed; figure skipped")
        return []
    store = RedisProcess(bench)
    local = _server(bench, {})
    shared = _server(
        bench,
        {"STATE_BACKEND": "redis", "REDIS_URL": store.url, "SLOT_LEASE_SECONDS": "1"},
    )
    seconds = bench.plan.wrk_seconds
    try:
        targets = {"redis": bench.piagent(shared), "local": bench.piagent(local)}
        for target in targets.values():
            _wrk_run(target, CONCURRENCY, 1)  # warm-up
        latency = bench.plan.latency_seconds
        lat_shared, lat_local = interleaved(
            bench,
            "shared latency",
            lambda _: _wrk_run(targets["redis"], 1, latency),
            lambda _: _wrk_run(targets["local"], 1, latency),
            other="local",
        )
        redis_cpu: list[float] = []

        def shared_run(_: int) -> LoadRun:
            before = store.tree().cpu_seconds()
            run = _wrk_run(targets["redis"], CONCURRENCY, seconds)
            spent = store.tree().cpu_seconds() - before
            redis_cpu.append(spent / max(run.rps * seconds, 1) * 1e3)
            return run

        cpu_shared, cpu_local = interleaved(
            bench,
            "shared cpu",
            shared_run,
            lambda _: _wrk_run(targets["local"], CONCURRENCY, seconds),
            other="local",
        )
    finally:
        bench.stop_server(local)
        bench.stop_server(shared)
        store.stop()
    p50_shared = median([r.p50_ms for r in lat_shared])
    p50_local = median([r.p50_ms for r in lat_local])
    cpu_s = median([r.cpu_per_request_ms for r in cpu_shared])
    cpu_l = median([r.cpu_per_request_ms for r in cpu_local])
    errors = sum(r.errors for r in lat_shared + cpu_shared)
    return [
        Row(
            key="shared_slot_latency",
            figure="shared",
            label="STATE_BACKEND=redis vs local: non-stream p50 latency, 1 client "
            "(limit column: local; checked: added)",
            unit="ms",
            target="informative",
            measured=p50_shared,
            limit=p50_local,
            checked=p50_shared - p50_local,
            checked_signed=True,
            runs={
                "redis": [r.p50_ms for r in lat_shared],
                "local": [r.p50_ms for r in lat_local],
            },
            note="two Redis round trips a request (take and give back the slot)"
            + (f"; wrk errors {errors}" if errors else ""),
        ),
        Row(
            key="shared_slot_cpu",
            figure="shared",
            label="STATE_BACKEND=redis vs local: piagent CPU per non-stream request, "
            f"{CONCURRENCY} clients (limit column: local)",
            unit="ms",
            target="informative",
            measured=cpu_s,
            limit=cpu_l,
            checked=cpu_s - cpu_l,
            checked_signed=True,
            runs={
                "redis": [r.cpu_per_request_ms for r in cpu_shared],
                "local": [r.cpu_per_request_ms for r in cpu_local],
            },
            note=f"redis-server's own CPU per request: {median(redis_cpu):.3f} ms",
        ),
    ]
