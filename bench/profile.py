"""``python -m bench.profile``: where one worker's CPU goes, by layer (py-spy).

Why a tool and not a recipe: "which layer costs what" is only worth quoting if
anyone can get the same table again, from the same fake, settings and load as
the bench. It starts the fake Ollama and gunicorn as ``bench.run`` does, drives
wrk at them, samples the worker with ``py-spy record --format raw`` and groups
each sample by the package of its innermost frame (its self time). Samples in
gevent's idle loop are left out, so the shares are of the time the worker was
busy. Needs py-spy: ``.venv/bin/pip install py-spy``.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import LOAD_TEST_ENV, MODEL
from bench.processes import (
    PROJECT_ROOT,
    FakeOllamaProcess,
    GunicornProcess,
    make_log_dir,
)
from bench.wrk_load import run_wrk

LOADS = {
    # 16 clients of 20-token JSON replies, as the non-stream figures.
    "nonstream": ({"message": "bench tokens=20", "stream": False}, 16),
    # 4 clients of 5,000-token streams at 0 ms, as the per-token CPU figure.
    "stream": ({"message": "bench tokens=5000", "stream": True}, 4),
}
# Innermost frame -> layer; the first match wins. System calls are named by the
# gevent socket method that makes them.
SYSCALLS = re.compile(r"^SocketMixin\.(send|recv|recv_into|getsockopt) |^select ")
LAYERS = (
    ("gunicorn/", "gunicorn: HTTP parsing and writing"),
    ("gevent/", "gevent: hub, greenlets, socket wrappers"),
    ("greenlet", "gevent: hub, greenlets, socket wrappers"),
    ("flask/", "Flask + werkzeug"),
    ("werkzeug/", "Flask + werkzeug"),
    ("blinker/", "Flask + werkzeug"),
    ("marshmallow/", "marshmallow"),
    ("requests/", "requests + urllib3 + http.client (to Ollama)"),
    ("urllib3/", "requests + urllib3 + http.client (to Ollama)"),
    ("http/client.py", "requests + urllib3 + http.client (to Ollama)"),
    ("email/", "requests + urllib3 + http.client (to Ollama)"),
    ("json/", "json (request bodies, NDJSON lines, replies)"),
    ("logging/", "logging (the request log line)"),
    ("piagent/", "piagent's own code"),
)
IDLE = ("Hub.run ", "poll.poll ", "Hub.wait ")


def layer_of(frame: str) -> str:
    if SYSCALLS.search(frame):
        return "system calls on sockets (send, recv, getsockopt, select)"
    for needle, layer in LAYERS:
        if needle in frame:
            return layer
    return "other standard library"


def by_layer(raw: str) -> tuple[int, collections.Counter[str]]:
    """Busy samples and their count per layer, from py-spy's raw output."""
    layers: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [frame for frame in stack.split(";") if "(" in frame]
        if not frames or frames[-1].startswith(IDLE):
            continue
        layers[layer_of(frames[-1])] += int(count)
    return sum(layers.values()), layers


def profile(mode: str, seconds: int, out: Path) -> str:
    """Run the load against a fresh server under py-spy; the table as text."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        raise SystemExit("py-spy is missing: .venv/bin/pip install py-spy")
    body, clients = LOADS[mode]
    log_dir = make_log_dir()
    fake = FakeOllamaProcess(log_dir, MODEL)
    fake.start()
    env = {
        "WORKERS": "1",
        "OLLAMA_HOST": fake.url,
        "OLLAMA_MODEL_GENERAL": MODEL,
        "ENABLE_MEMORY": "true",
        **LOAD_TEST_ENV,
    }
    server = GunicornProcess(PROJECT_ROOT, log_dir, env)
    server.start()
    try:
        server.wait_healthy()
        worker = server.tree().processes()[1]
        encoded = json.dumps(body).encode()
        run_wrk(server.port, "/chat", encoded, connections=clients, seconds=1)
        spy = subprocess.Popen(
            [py_spy, "record", "-p", str(worker.pid), "-r", "250", "-d", str(seconds)]
            + ["--format", "raw", "-o", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # py-spy attached before the measured load starts
        tree = server.tree()
        cpu_before = tree.cpu_seconds()
        result = run_wrk(
            server.port, "/chat", encoded, connections=clients, seconds=seconds
        )
        cpu = tree.cpu_seconds() - cpu_before
        spy.wait(seconds + 30)
    finally:
        server.stop()
        fake.stop()
    busy, layers = by_layer(out.read_text())
    per = "token" if mode == "stream" else "request"
    units = result.requests * (5000 if mode == "stream" else 1)
    lines = [
        f"{mode}: {result.requests:,} requests from {clients} wrk clients in "
        f"{result.duration_s:.1f} s; gunicorn tree CPU {cpu:.2f} s = "
        f"{cpu / units * 1e6:.1f} µs per {per}; {busy:,} busy samples",
        "",
        "| layer (self time of the innermost frame) | share of busy samples |",
        "|---|---:|",
    ]
    lines += [
        f"| {name} | {count / busy:.0%} |" for name, count in layers.most_common()
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--mode", choices=sorted(LOADS), default="nonstream")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--out", type=Path, default=None, help="py-spy raw output (kept)"
    )
    args = parser.parse_args(argv)
    out = args.out or make_log_dir() / f"py-spy-{args.mode}.txt"
    print(profile(args.mode, args.seconds, out))
    print(f"\nraw stacks: {out} (flamegraph: py-spy record --format flamegraph)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
