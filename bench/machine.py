"""What the numbers were measured on, for RESULTS.md.

Why: the same harness runs on a developer's x86 VM and on a Raspberry Pi, and a
figure means nothing without the CPU, cores, memory and software behind it.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import psutil

from bench.wrk_load import wrk_version

PACKAGES = (
    "flask",
    "werkzeug",
    "gunicorn",
    "gevent",
    "greenlet",
    "requests",
    "urllib3",
    "marshmallow",
    "python-decouple",
    "flask-limiter",
    "flask-cors",
    "psutil",
)


def cpu_model() -> str:
    """x86 says "model name"; a Raspberry Pi says "Model" (the board), and
    "Hardware" (the SoC) on older kernels."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                name, _, value = line.partition(":")
                fields.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    for name in ("model name", "Model", "Hardware"):
        if fields.get(name):
            return fields[name]
    return platform.processor() or platform.machine()


def describe() -> dict[str, str]:
    """CPU, cores, RAM, kernel, Python and the versions of the packages that matter."""
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return {
        "cpu": f"{cpu_model()} ({platform.machine()})",
        "cores": str(os.cpu_count()),
        "ram": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "packages": ", ".join(versions),
        "load generator": wrk_version(),
        "speed probe": speed_probe(),
    }


def speed_probe(rounds: int = 20_000) -> str:
    """Two costs every figure is made of, timed here and now (best of 3).

    Why: on a shared VM the same code measures two or three times slower from
    one day to the next; these say how fast the machine was during this run,
    so runs on different days can be compared.
    """
    line = json.dumps(
        {"model": "m", "message": {"role": "assistant", "content": "tok "}}
    )
    best_json = min(_timed(lambda: json.loads(line), rounds) for _ in range(3))
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
        with client, peer:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def round_trip() -> None:
                client.send(b"tok tok tok ")
                peer.recv(64)

            best_tcp = min(_timed(round_trip, rounds) for _ in range(3))
    return (
        f"json.loads of an Ollama line {best_json:.2f} µs; loopback TCP send + "
        f"recv of 12 bytes {best_tcp:.2f} µs"
    )


def _timed(step: Callable[[], object], rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        step()
    return (time.perf_counter() - started) / rounds * 1e6


def checkout(root: Path) -> str:
    """Which code was measured: the git commit, and whether it had local edits.

    Never the directory: a path says nothing to a reader on another machine.
    """

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "(not a git checkout)"
    return f"at commit {commit}" + (" with uncommitted changes" if dirty else "")
