"""``python -m bench.run``: every figure, piagent vs the limit, into RESULTS.md.

Why one entry point that starts everything itself: the numbers are only
comparable from run to run if the fake, gunicorn, ports, environment and order
are the same every time, and nobody has to remember how to set them up.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import machine
from bench.figures_cache import prompt_cache, real_model
from bench.figures_crowd import crowd
from bench.figures_hosts import hosts
from bench.figures_lifecycle import lifecycle
from bench.figures_reference import reference
from bench.figures_requests import latency_one_client, throughput_and_cpu
from bench.figures_shared import shared_slot
from bench.figures_streams import disconnect, first_byte, token_cpu, token_gaps
from bench.harness import FULL, MODEL, QUICK, Bench, log
from bench.memory_store import memory_store
from bench.processes import (
    BENCH_DIR,
    PROJECT_ROOT,
    FakeOllamaProcess,
    http_get,
    make_log_dir,
    raise_nofile_limit,
)
from bench.results import (
    Row,
    markdown_table,
    write_json,
    write_results_md,
    write_sections,
)
from bench.wrk_load import ensure_wrk

# In run order: fresh-server figures first, so the shared server is not idling
# in the background while they measure.
FIGURES: dict[str, Callable[[Bench], list[Row]]] = {
    "lifecycle": lifecycle,
    "concurrency": crowd,
    "nonstream": throughput_and_cpu,
    "latency": latency_one_client,
    "ttfb": first_byte,
    "tokencpu": token_cpu,
    "gaps": token_gaps,
    "disconnect": disconnect,
    # Several model hosts: routing's cost, requests lost when a host dies.
    "hosts": hosts,
    # STATE_BACKEND=redis: a shared slot's cost (skipped without redis-server).
    "shared": shared_slot,
    "memstore": memory_store,
    # Conversations through memory policies, each with a RESULTS.md section.
    "cache": prompt_cache,
    "realmodel": real_model,
    # Last: it measures piagent again next to the straightforward proxy, and
    # changes no other row.
    "reference": reference,
}
ALIASES = {
    "startup": "lifecycle",
    "idle": "lifecycle",
    "crowd": "concurrency",
    "throughput": "nonstream",
    "cpu": "nonstream",
    "memory": "memstore",
    "straightforward": "reference",
    "routing": "hosts",
    "redis": "shared",
    "state": "shared",
    "prompt-cache": "cache",
    "real": "realmodel",
    "llama": "realmodel",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="short runs (~3 min)")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated figures (prints only, unless --write): "
        + ", ".join([*FIGURES, *ALIASES]),
    )
    parser.add_argument("--runs", type=int, help="runs per side (default 5, --quick 3)")
    parser.add_argument(
        "--root", type=Path, default=PROJECT_ROOT, help="dir with wsgi.py and .venv"
    )
    parser.add_argument(
        "--wait-server",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for ROOT/wsgi.py to appear",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for gunicorn (repeatable), for experiments",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print only; keep RESULTS.md"
    )
    parser.add_argument(
        "--write-sections",
        action="store_true",
        help="replace only the sections this run measured (cache, realmodel) in "
        "RESULTS.md, keeping its table and other sections",
    )
    parser.add_argument(
        "--write",
        action="store_true",
        help="with --only: still rewrite results.json and RESULTS.md (which then "
        "hold only those figures)",
    )
    return parser.parse_args(argv)


def selected(only: str) -> list[str]:
    if not only:
        return list(FIGURES)
    names = []
    for raw in only.split(","):
        name = ALIASES.get(raw.strip(), raw.strip())
        if name not in FIGURES:
            raise SystemExit(
                f"unknown figure {raw!r}; choose from {', '.join(FIGURES)}"
            )
        if name not in names:
            names.append(name)
    return [name for name in FIGURES if name in names]


def check_server(bench: Bench, wait: float) -> None:
    """Is there a piagent that starts and speaks the contract? If not, say why
    and measure the limit only."""
    wsgi = bench.root / "wsgi.py"
    deadline = time.monotonic() + wait
    while not wsgi.exists() and time.monotonic() < deadline:
        time.sleep(5)
    if not wsgi.exists():
        bench.server_missing = f"{wsgi} does not exist"
        bench.warn(f"no server: {bench.server_missing}; measuring the limit only")
        return
    try:
        server, seconds = bench.new_server()
    except RuntimeError as exc:
        bench.server_missing = f"gunicorn did not become healthy: {exc}"
        bench.warn(bench.server_missing)
        return
    try:
        problems = sanity_problems(server.port)
    finally:
        bench.stop_server(server)
    log(f"sanity: piagent healthy in {seconds:.2f} s; problems: {problems or 'none'}")
    for problem in problems:
        bench.warn(f"contract: {problem}")
    if any(p.startswith("fatal") for p in problems):
        bench.server_missing = "piagent does not answer /chat: " + "; ".join(problems)


def sanity_problems(port: int) -> list[str]:
    """One health check, one non-stream and one stream request, checked."""
    import asyncio

    from bench.http_client import one_request

    problems = []
    status, body = http_get(port, "/health")
    if status != 200 or json.loads(body) != {"status": "ok"}:
        problems.append(f"/health answered {status} {body[:80]!r}")

    async def chat(stream: bool, tokens: int):  # noqa: ANN202
        message = {"message": f"bench tokens={tokens}", "stream": stream}
        return await one_request(
            "127.0.0.1", port, "POST", "/chat", json.dumps(message).encode()
        )

    plain = asyncio.run(chat(False, 20))
    if plain.status != 200:
        problems.append(
            f"fatal: non-stream /chat answered {plain.status} {plain.body[:200]!r}"
        )
    else:
        data = plain.json()
        missing = {"reply", "conversation_id", "model", "provider"} - set(data)
        if missing:
            problems.append(f"non-stream /chat lacks {sorted(missing)}")
        if data.get("reply") != "tok " * 20:
            problems.append(
                f"non-stream reply is not 20 tokens: {data.get('reply')!r:.80}"
            )
    streamed = asyncio.run(chat(True, 50))
    if streamed.status != 200:
        problems.append(
            f"fatal: stream /chat answered {streamed.status} {streamed.body[:200]!r}"
        )
    else:
        if not streamed.headers.get("content-type", "").startswith("text/plain"):
            problems.append(
                f"stream content-type {streamed.headers.get('content-type')}"
            )
        if streamed.body != b"tok " * 50:
            problems.append(f"stream body is not 50 tokens: {streamed.body[:80]!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = selected(args.only)
    plan = QUICK if args.quick else FULL
    if args.runs:
        plan = type(plan)(**{**plan.__dict__, "runs": max(1, args.runs)})
    started = time.monotonic()
    nofile = raise_nofile_limit()
    ensure_wrk()
    log_dir = make_log_dir()
    log(f"figures: {', '.join(names)}; logs in {log_dir}; open-files limit {nofile}")
    fake = FakeOllamaProcess(log_dir, MODEL)
    fake.start()
    extra_env = dict(item.split("=", 1) for item in args.env)
    bench = Bench(
        root=args.root.resolve(),
        plan=plan,
        log_dir=log_dir,
        fake=fake,
        extra_env=extra_env,
    )
    if nofile < 4096:
        bench.warn(f"open-files limit is only {nofile}: 1,000 streams may fail")
    rows: list[Row] = []
    try:
        log(f"fake Ollama on :{fake.port}")
        needs_server = any(n != "memstore" for n in names)
        if needs_server:
            check_server(bench, args.wait_server)
        for name in names:
            try:
                rows.extend(FIGURES[name](bench))
            except Exception as exc:  # one broken figure must not lose the others
                bench.warn(f"figure {name} failed: {type(exc).__name__}: {exc}")
    finally:
        bench.close()
    table = markdown_table(rows)
    print(table)
    for section in bench.sections:
        print("\n" + section.text)
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(
            ["python", "-m", "bench.run", *(argv if argv is not None else sys.argv[1:])]
        ),
        "mode": "quick" if args.quick else "full",
        "runs": plan.runs,
        "figures": names,
        "server": f"piagent {machine.checkout(bench.root)}"
        if bench.has_server
        else f"not measured ({bench.server_missing})",
        "seconds": round(time.monotonic() - started, 1),
        "environment": bench.gunicorn_env()
        | {
            "BIND": "127.0.0.1:<free port>",
            "OLLAMA_HOST": "http://127.0.0.1:<fake port>",
        },
        "warnings": bench.warnings,
    }
    if args.write_sections and not args.no_write:
        write_sections(BENCH_DIR / "RESULTS.md", bench.sections)
        names = ", ".join(section.name for section in bench.sections) or "none"
        log(f"wrote the sections {names} of {BENCH_DIR / 'RESULTS.md'}")
    elif args.no_write or (args.only and not args.write):
        log("results.json and RESULTS.md left as they were (--only/--no-write)")
    else:
        description = machine.describe()
        write_json(BENCH_DIR / "results.json", rows, {**meta, "machine": description})
        write_results_md(
            BENCH_DIR / "RESULTS.md", rows, meta, description, bench.sections
        )
        log(f"wrote {BENCH_DIR / 'results.json'} and {BENCH_DIR / 'RESULTS.md'}")
    log(f"done in {meta['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
