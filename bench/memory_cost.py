"""Cost of one exchange per memory backend: time, and SQLite's writes to the card.

    python -m bench.memory_cost [--exchanges N] [--redis-url URL]

An exchange is what /chat does to memory: read the history, then append the
user message and the reply. Time is the mean over N exchanges spread over 50
conversations (window of 8, replies of about 200 tokens). For SQLite it also
counts the pages written to the write-ahead log per exchange, and derives the
fsyncs: none per commit (synchronous=NORMAL), two per automatic checkpoint.
Redis is measured against REDIS_URL / --redis-url, or a redis-server started
on a free loopback port if the binary is installed; otherwise it is skipped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from piagent.memory.local import LocalMemoryStore
from piagent.memory.sqlite_store import SQLiteMemoryStore

USER = "Please summarise what the sensor in the kitchen reported today. " * 3
REPLY = "The kitchen sensor reported a steady temperature around 21 degrees. " * 12
CONVERSATIONS = 50
# piagent's defaults: MEMORY_MAX_TURNS=8, MEMORY_TRIM_TO=0.
LIMITS = {
    "max_turns": 8,
    "ttl_seconds": 3600.0,
    "max_conversations": 500,
    "trim_to": 0,
}
CHECKPOINT_PAGES = 1000  # SQLite's default wal_autocheckpoint


def exchange(store, n: int) -> None:
    conversation = f"bench-{n % CONVERSATIONS}"
    store.history(conversation)
    store.append_exchange(conversation, USER, REPLY)


def time_per_exchange(store, exchanges: int) -> float:
    for n in range(CONVERSATIONS):
        exchange(store, n)
    started = time.perf_counter()
    for n in range(exchanges):
        exchange(store, n)
    return (time.perf_counter() - started) / exchanges * 1e6


def sqlite_pages_per_exchange(path: str, exchanges: int) -> tuple[float, float]:
    """WAL frames (page writes) of the history read and of the append, averaged.

    The log is emptied before each step and its frames counted after, from a
    second connection, so autocheckpoints cannot hide any.
    """
    store = SQLiteMemoryStore(path, **LIMITS)
    probe = sqlite3.connect(path, isolation_level=None)
    read_frames = append_frames = 0
    for n in range(exchanges):
        conversation = f"bench-{n % CONVERSATIONS}"
        probe.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store.history(conversation)
        read_frames += probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        probe.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store.append_exchange(conversation, USER, REPLY)
        append_frames += probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    return read_frames / exchanges, append_frames / exchanges


def start_redis() -> tuple[str, subprocess.Popen] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return f"redis://127.0.0.1:{port}/0", process
        except OSError:
            time.sleep(0.02)
    process.kill()
    return None


def import_rss_kib(module: str) -> int:
    """Resident memory a worker gains by importing `module` after piagent's stack."""
    code = (
        "import re\n"
        "def rss():\n"
        "    text = open('/proc/self/status').read()\n"
        "    return int(re.search(r'VmRSS:\\s+(\\d+)', text).group(1))\n"
        "import gevent.monkey, gunicorn, flask, marshmallow, requests, piagent\n"
        f"before = rss()\nimport {module}\nprint(rss() - before)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return int(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=2000)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""))
    args = parser.parse_args()
    n = args.exchanges
    print(f"memory cost per exchange (history read + append), {n} exchanges")
    local = LocalMemoryStore(**LIMITS)
    print(f"  memory  {time_per_exchange(local, n):8.1f} µs")

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "memory.sqlite3")
        sqlite = SQLiteMemoryStore(path, **LIMITS)
        print(f"  sqlite  {time_per_exchange(sqlite, n):8.1f} µs")
        page = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
        read, append = sqlite_pages_per_exchange(str(Path(tmp) / "pages.db"), n // 4)
        pages = read + append
        print(
            f"          {pages:.1f} page writes to the WAL per exchange "
            f"({read:.1f} read/touch + {append:.1f} append; {page} B pages, "
            f"{pages * (page + 24) / 1024:.1f} KiB)"
        )
        print(
            f"          0 fsyncs per commit; 2 per checkpoint of {CHECKPOINT_PAGES} "
            f"pages = {2 * pages / CHECKPOINT_PAGES:.3f} per exchange"
        )

    started = None
    url = args.redis_url
    if not url:
        started = start_redis()
        url = started[0] if started else ""
    if url:
        from piagent.memory.redis_store import RedisMemoryStore

        store = RedisMemoryStore(url, prefix="piagent:bench:", **LIMITS)
        print(f"  redis   {time_per_exchange(store, n):8.1f} µs  (loopback)")
        for k in range(CONVERSATIONS):
            store.forget(f"bench-{k}")
        store.client.delete("piagent:bench:lru")
    else:
        print("  redis   skipped: no --redis-url and no redis-server installed")
    if started:
        started[1].terminate()
        started[1].wait()

    print("import cost (RSS added to a worker that has loaded piagent):")
    for module in ("sqlite3", "redis"):
        print(f"  {module:8s}{import_rss_kib(module) / 1024:8.1f} MiB")


if __name__ == "__main__":
    main()
