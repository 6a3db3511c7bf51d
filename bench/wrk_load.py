"""Running wrk with ``wrk_chat.lua`` and reading its summary.

Why wrk: it is C with an epoll loop, so at the request rates piagent reaches
(about a thousand a second) it uses a few percent of one core and cannot be the
bottleneck. The Lua script makes it POST a JSON body and print a machine-readable
summary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from bench.processes import BENCH_DIR, HOST

LUA_SCRIPT = BENCH_DIR / "wrk_chat.lua"


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    duration_s: float
    errors: int
    p50_us: float
    p99_us: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def ensure_wrk() -> str:
    """Path of wrk, installing the Debian package if it is missing and we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("bench: wrk is missing; install it: sudo apt-get install wrk")
    print("wrk missing: apt-get install -y wrk", file=sys.stderr, flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update"], check=False, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "wrk"], check=True, env=env, capture_output=True
    )
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed and apt-get could not install it")
    return found


def wrk_version() -> str:
    wrk = shutil.which("wrk")
    if not wrk:
        return "not installed"
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).splitlines()[0].split(" Copyright")[0]


def run_wrk(
    port: int, path: str, body: bytes, *, connections: int, seconds: float
) -> WrkResult:
    """One wrk run of ``seconds`` with ``connections`` keep-alive clients."""
    env = dict(os.environ, BENCH_PATH=path, BENCH_BODY=body.decode())
    command = [
        ensure_wrk(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_SCRIPT),
        f"http://{HOST}:{port}",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line.removeprefix("BENCH_JSON "))
            errors = sum(v for k, v in data.items() if k.startswith("errors_"))
            return WrkResult(
                requests=data["requests"],
                duration_s=data["duration_us"] / 1e6,
                errors=errors,
                p50_us=data["p50_us"],
                p99_us=data["p99_us"],
            )
    raise RuntimeError(f"wrk printed no summary: {done.stdout}\n{done.stderr}")
