"""piagent next to the straightforward proxy its targets were calibrated against.

Why: the issue set its targets from ``bench/reference_app.py`` (Flask + gevent +
requests, no more) measured on another machine: about 1.3 ms CPU per JSON
request, 12 µs per streamed token, 72 MB idle for master + worker. This VM runs
two or three times faster or slower from one day to the next, so a figure alone
does not say whether piagent beat that bar; the same app measured in the same
run, interleaved with piagent, does. The measurements are the other figures'
own (wrk at the same concurrency, 5,000-token streams, idle RSS after start);
in these rows the limit column is the reference and the ratio is piagent ÷
reference. They are informative: no other row depends on them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from bench.figures_lifecycle import MB, LifeRun, _server_run
from bench.figures_requests import CONCURRENCY, LoadRun, _wrk_run
from bench.figures_streams import LONG_TOKENS, _token_cpu_run
from bench.harness import MODEL, Bench, Target, interleaved, log
from bench.http_client import one_request
from bench.processes import HOST, PROJECT_ROOT, GunicornProcess
from bench.results import Row
from bench.stats import median

# What the issue measured the reference at, and its targets for piagent.
CALIBRATION = {
    "cpu_per_request": (1.3, 0.8, "ms"),
    "cpu_per_token": (12.0, 10.0, "µs"),
    "idle_rss": (72.0, 60.0, "MB"),
}


class ReferenceProcess(GunicornProcess):
    """``bench/reference_app.py`` under gunicorn, as its docstring starts it.

    gunicorn starts in ``log_dir`` so it does not read piagent's
    ``gunicorn.conf.py`` (a plain deployment has none) and ``--chdir`` makes
    ``bench`` importable. The control socket is off, as in piagent's
    configuration: it is a management feature, and its default path in the home
    directory would be shared by every gunicorn started this way.
    """

    def __init__(self, root: Path, log_dir: Path, ollama_url: str) -> None:
        env = {"OLLAMA_HOST": ollama_url, "OLLAMA_MODEL": MODEL}
        super().__init__(root, log_dir, env, name="reference")
        self.workdir = log_dir

    def arguments(self) -> list[str]:
        return [
            "-k",
            "gevent",
            "-w",
            "1",
            "--worker-connections",
            "1000",
            "--no-control-socket",
            "-b",
            f"{HOST}:{self.port}",
            "--chdir",
            str(PROJECT_ROOT),
            "bench.reference_app:app",
        ]


def reference_target(server: GunicornProcess) -> Target:
    """The reference takes piagent's request body and answers in its shapes."""
    return Target("reference", server.port, "/chat", server.tree())


def token_problems(target: Target) -> list[str]:
    """Do a non-stream and a stream reply carry every token the fake sent?"""

    async def chat(stream: bool, tokens: int) -> int:
        body = json.dumps({"message": f"bench tokens={tokens}", "stream": stream})
        response = await one_request(
            HOST, target.port, "POST", target.path, body.encode()
        )
        return target.tokens_in(response) if response.ok else -response.status

    problems = []
    for stream, tokens in ((False, 20), (True, 50)):
        got = asyncio.run(chat(stream, tokens))
        if got != tokens:
            kind = "stream" if stream else "non-stream"
            problems.append(f"{target.name} {kind} reply: {got} tokens of {tokens}")
    return problems


def _row(
    key: str,
    label: str,
    piagent: list[float],
    reference: list[float],
    ok: bool,
    note: str,
) -> Row:
    quantity = CALIBRATION[key]
    measured = median(piagent) if piagent else None
    ref = median(reference) if reference else None
    ratio = None if measured is None or not ref else measured / ref
    calibrated = (
        f"the issue's target ≤ {quantity[1]:g} {quantity[2]} was set against the "
        f"reference's {quantity[0]:g} {quantity[2]} elsewhere, a ratio of "
        f"{quantity[1] / quantity[0]:.2f}×"
    )
    if ref is not None:
        calibrated += (
            f"; scaled to this run's reference it is "
            f"≤ {ref * quantity[1] / quantity[0]:.3g} {quantity[2]}"
        )
    return Row(
        key=f"reference_{key}",
        figure="reference",
        label=label,
        unit=quantity[2],
        target="piagent < reference",
        measured=measured,
        limit=ref,
        checked=ratio,
        checked_unit="×",
        passed=None if ratio is None else ratio < 1 and ok,
        runs={"piagent": piagent, "reference": reference},
        note="; ".join(filter(None, [note, calibrated])),
    )


def reference(bench: Bench) -> list[Row]:
    """Idle RSS, CPU per request and per token: piagent vs the reference."""
    root, log_dir, url = bench.root, bench.log_dir, bench.fake.url
    piagent_idle = None
    if bench.has_server:

        def piagent_idle(_: int) -> LifeRun:
            return _server_run(bench, with_requests=False)

    p_idle, r_idle = interleaved(
        bench,
        "reference idle",
        piagent_idle,
        lambda _: _server_run(bench, False, ReferenceProcess(root, log_dir, url)),
        other="reference",
    )

    server, seconds = bench.new_server(ReferenceProcess(root, log_dir, url))
    try:
        log(f"reference proxy up on :{server.port} in {seconds:.2f} s")
        ref = reference_target(server)
        targets = [ref]
        if bench.has_server:
            targets.insert(0, bench.piagent(bench.shared_server()))
        problems = [p for target in targets for p in token_problems(target)]
        for problem in problems:
            bench.warn(f"reference: {problem}")
        for target in targets:  # warm-up, as the nonstream and tokencpu figures do
            _wrk_run(target, CONCURRENCY, 1)
            _token_cpu_run(target, 1)
        seconds = bench.plan.wrk_seconds
        streams = bench.plan.token_streams
        piagent_load = piagent_tokens = None
        if bench.has_server:
            piagent = targets[0]

            def piagent_load(_: int) -> LoadRun:
                return _wrk_run(piagent, CONCURRENCY, seconds)

            def piagent_tokens(_: int) -> tuple[float, int]:
                return _token_cpu_run(piagent, streams)

        p_load, r_load = interleaved(
            bench,
            "reference nonstream",
            piagent_load,
            lambda _: _wrk_run(ref, CONCURRENCY, seconds),
            other="reference",
        )
        p_tokens, r_tokens = interleaved(
            bench,
            "reference tokencpu",
            piagent_tokens,
            lambda _: _token_cpu_run(ref, streams),
            other="reference",
        )
    finally:
        bench.stop_server(server)

    errors = sum(r.errors for r in p_load), sum(r.errors for r in r_load)
    incomplete = sum(r[1] for r in p_tokens), sum(r[1] for r in r_tokens)
    p_pss = [r.idle_pss / MB for r in p_idle]
    r_pss = [r.idle_pss / MB for r in r_idle]
    return [
        _row(
            "cpu_per_request",
            f"vs straightforward proxy: non-stream /chat, 20 tokens, "
            f"{CONCURRENCY} clients: CPU per request",
            [r.cpu_per_request_ms for r in p_load],
            [r.cpu_per_request_ms for r in r_load],
            not any(errors) and not problems,
            "in the reference rows the limit column is bench/reference_app.py "
            "(Flask + requests, gunicorn -k gevent, one worker) and checked is "
            "piagent ÷ reference"
            + (
                f"; wrk errors: piagent {errors[0]}, reference {errors[1]}"
                if any(errors)
                else ""
            )
            + (f"; {'; '.join(problems)}" if problems else ""),
        ),
        _row(
            "cpu_per_token",
            f"vs straightforward proxy: stream, {LONG_TOKENS:,} tokens at 0 ms: "
            "CPU per token",
            [r[0] for r in p_tokens],
            [r[0] for r in r_tokens],
            not any(incomplete) and not problems,
            "at 0 ms the fake writes 256 lines at a time: piagent relays what one "
            "read brought in one write (tens of tokens), the reference writes "
            "every token on its own, so this ratio shows that batching as much "
            "as the cost of a token relayed alone"
            + (
                f"; incomplete streams: piagent {incomplete[0]}, "
                f"reference {incomplete[1]}"
                if any(incomplete)
                else ""
            ),
        ),
        _row(
            "idle_rss",
            "vs straightforward proxy: idle RSS of master + worker after start",
            [r.idle_rss / MB for r in p_idle],
            [r.idle_rss / MB for r in r_idle],
            True,
            "PSS summed: "
            + (f"piagent {median(p_pss):.1f} MB, " if p_pss else "")
            + f"reference {median(r_pss):.1f} MB",
        ),
    ]
