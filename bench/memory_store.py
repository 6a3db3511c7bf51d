"""The conversation memory store, measured in-process: flat with many chats?

Why in-process: the store's own cost per turn is microseconds, far below what an
HTTP round trip can resolve, and the question is only whether it grows with the
number of live conversations (an O(n) scan or expiry would show here first).
"""

from __future__ import annotations

import gc
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.harness import Bench, log
from bench.results import Row
from bench.stats import median

FEW, MANY = 10, 10_000
PREFILL_EXCHANGES = 4
USER_TEXT = "What is the weather like on the Pi today? " * 2
ASSISTANT_TEXT = "It is a sunny day for a small computer. " * 4


def measure_store(
    make_store: Callable[[], Any],
    append_method: str,
    read_method: str,
    live: int,
    ops: int,
    seed: int = 0,
    touched: int | None = None,
) -> float:
    """µs per (append one exchange + read the history) with ``live`` conversations.

    ``make_store()`` returns an empty store; ``append_method(conversation_id,
    user, assistant)`` and ``read_method(conversation_id)`` are its two methods.
    Conversations are picked at random so no cache favours the small case;
    ``touched`` limits the picks to that many of them (the same store size with a
    small working set, which tells the store's algorithm from CPU cache misses).
    """
    store = make_store()
    append = getattr(store, append_method)
    read = getattr(store, read_method)
    ids = [f"conversation-{i:06d}" for i in range(live)]
    for conversation_id in ids:
        for _ in range(PREFILL_EXCHANGES):
            append(conversation_id, USER_TEXT, ASSISTANT_TEXT)
    rng = random.Random(seed)
    pool = ids[:touched] if touched else ids
    order = [rng.choice(pool) for _ in range(ops)]
    gc.collect()  # start every measurement from the same collector state
    started = time.perf_counter()
    for conversation_id in order:
        append(conversation_id, USER_TEXT, ASSISTANT_TEXT)
        read(conversation_id)
    return (time.perf_counter() - started) / ops * 1e6


def piagent_store_factory(bench: Bench) -> Callable[[], Any] | None:
    """piagent's LocalMemoryStore with its default window and TTL, and a cap
    large enough for MANY live conversations (the default cap is lower)."""
    root = str(bench.root)
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        from piagent.memory import LocalMemoryStore
        from piagent.settings import Settings
    except ImportError as exc:
        bench.warn(f"piagent.memory not importable ({exc}): memory-store row skipped")
        return None
    defaults = {
        f: Settings.__dataclass_fields__[f].default
        for f in Settings.__dataclass_fields__
    }
    max_turns = defaults.get("memory_max_turns", 8)
    trim_to = defaults.get("memory_trim_to", 0)
    ttl_seconds = defaults.get("memory_ttl_min", 60) * 60

    def make() -> Any:
        return LocalMemoryStore(
            max_turns=max_turns,
            ttl_seconds=ttl_seconds,
            max_conversations=2 * MANY,
            trim_to=trim_to,
        )

    return make


def memory_store(bench: Bench) -> list[Row]:
    """append_exchange + history with 10 and with 10,000 live conversations."""
    make = piagent_store_factory(bench)
    row = Row(
        key="memory_store_flat",
        figure="memstore",
        label=f"memory store append+read: {MANY:,} live conversations "
        f"(limit column: {FEW})",
        unit="µs",
        target="≤ 1.2× apart",
        checked_unit="×",
        note="in-process piagent.memory.LocalMemoryStore: append_exchange + history "
        "on a random conversation; checked = ratio of the two",
    )
    if make is None:
        return [row]
    few: list[float] = []
    many: list[float] = []
    many_hot: list[float] = []
    ops = bench.plan.store_ops
    for index in range(bench.plan.runs):
        log(f"memstore: run {index + 1}/{bench.plan.runs}")
        few.append(measure_store(make, "append_exchange", "history", FEW, ops, index))
        many.append(measure_store(make, "append_exchange", "history", MANY, ops, index))
        many_hot.append(
            measure_store(make, "append_exchange", "history", MANY, ops, index, FEW)
        )
    hot = median(many_hot)
    row.note += (
        f"; diagnostic: {MANY:,} live but only {FEW} of them touched: {hot:.2f} µs "
        f"({hot / median(few):.2f}× the {FEW}-live case; near 1× means the gap is "
        "the working set outgrowing the CPU caches, not the store's algorithm)"
    )
    row.measured = median(many)
    row.limit = median(few)
    row.checked = max(row.measured / row.limit, row.limit / row.measured)
    row.passed = row.checked <= 1.2
    row.runs = {"piagent": many, "limit": few}
    return [row]
