"""Idle RSS of a fresh piagent, and after it answered some paths once.

``python -m bench.rss_after /openapi.json /docs`` starts the real gunicorn
(one gevent worker, the fake Ollama) a few times, interleaving nothing else,
and prints the medians of master + worker RSS and PSS at idle and after one
GET of each path: what serving those paths the first time adds (lazy imports,
caches). ``--env NAME=VALUE`` sets piagent settings, e.g. ``--env WEB_UI=false``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.processes import (
    FakeOllamaProcess,
    GunicornProcess,
    http_get,
    make_log_dir,
)
from bench.stats import median

ROOT = Path(__file__).resolve().parents[1]
MB = 1e6
SETTLE_SECONDS = 1.0


def one_run(env: dict[str, str], paths: list[str]) -> tuple[int, int, int, int]:
    """(idle RSS, idle PSS, RSS after, PSS after) of one fresh server."""
    logs = make_log_dir()
    fake = FakeOllamaProcess(logs, "qwen2.5:3b-instruct")
    fake.start()
    server = GunicornProcess(ROOT, logs, {"OLLAMA_HOST": fake.url, **env})
    try:
        server.start()
        server.wait_healthy()
        tree = server.tree()
        time.sleep(SETTLE_SECONDS)
        idle = tree.rss_bytes(), tree.pss_bytes()
        for path in paths:
            status, _ = http_get(server.port, path, timeout=10)
            if status != 200:
                raise RuntimeError(f"GET {path}: {status}")
        time.sleep(SETTLE_SECONDS)
        return (*idle, tree.rss_bytes(), tree.pss_bytes())
    finally:
        server.stop()
        fake.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rss_after")
    parser.add_argument("paths", nargs="*", help="paths to GET once (/openapi.json)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    runs = [one_run(env, args.paths) for _ in range(args.runs)]
    idle_rss, idle_pss, rss, pss = (median([run[i] for run in runs]) for i in range(4))
    print(f"{args.runs} fresh servers, env {env or 'default'}, medians:")
    print(f"  idle:  RSS {idle_rss / MB:.1f} MB, PSS {idle_pss / MB:.1f} MB")
    added = ", ".join(args.paths) or "nothing"
    print(f"  after GET {added}: RSS {rss / MB:.1f} MB, PSS {pss / MB:.1f} MB")
    print(f"  added: RSS {(rss - idle_rss) / MB:+.1f} MB")


if __name__ == "__main__":
    main()
