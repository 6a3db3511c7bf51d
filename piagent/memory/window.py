"""Where a conversation's window is cut: whole exchanges, in blocks, rarely.

A model server keeps the previous prompt's KV cache and re-reads only what
follows the first token that differs. A window that slides by one exchange
every turn changes the prompt right after the system prompt, so the whole
history is read again each time. Instead the window grows append-only, and
when it would outgrow its limit the oldest whole exchanges go in one cut, down
to `trim_to` messages, after which it grows append-only again: one expensive
turn per `max_turns - trim_to` messages instead of every turn.

An exchange is a user message and everything after it up to the next user
message (a reply, and later tool calls and results), so a cut always lands on a
user message and a window never opens with a reply whose question is gone.

Every store applies these rules (Redis in Lua, the same logic); the chat
service applies `fit_start` to a turn's history and asks the store to persist
the cut, so every worker renders the same stored window to the same prompt.
"""

from __future__ import annotations

from collections.abc import Sequence


def sliding(max_turns: int) -> int:
    """The `trim_to` of a window that slides by one exchange on every turn
    once full, as piagent's did before cuts in blocks (the cache goes cold)."""
    return max(0, max_turns - 2)


def kept_from(roles: Sequence[str], keep: int) -> int:
    """Where a window cut to at most `keep` messages starts: the oldest user
    message among its last `keep`; len(roles) (nothing kept) if none is."""
    for index in range(max(0, len(roles) - keep), len(roles)):
        if roles[index] == "user":
            return index
    return len(roles)


def append_start(
    roles: Sequence[str], exchange_size: int, max_turns: int, trim_to: int
) -> int | None:
    """Where the window starts once an exchange of `exchange_size` messages is
    appended: 0 while it fits in `max_turns`; else the start of a cut to
    `trim_to` messages (fewer if the exchange is long), with the exchange
    after them. None: the exchange alone exceeds `max_turns`, so nothing is
    kept, not even it."""
    if len(roles) + exchange_size <= max_turns:
        return 0
    keep = min(trim_to, max_turns - exchange_size)
    if keep < 0:
        return None
    return kept_from(roles, keep)


def fit_start(
    roles: Sequence[str],
    costs: Sequence[int],
    fixed_cost: int,
    budget: int,
    max_turns: int,
    trim_to: int,
) -> int:
    """Where a turn's history starts so that it fits: 0 (all of it, the
    prompt only grows) while it is at most `max_turns` messages and
    `fixed_cost` (system prompt and new message) plus its `costs` fit in
    `budget`; else cut to `trim_to` messages, and further, a whole exchange
    at a time, until it fits or nothing is left."""
    total = fixed_cost + sum(costs)
    if len(roles) <= max_turns and total <= budget:
        return 0
    start = kept_from(roles, min(trim_to, max_turns))
    used = fixed_cost + sum(costs[start:])
    while start < len(roles) and used > budget:
        following = kept_from(roles, len(roles) - start - 1)
        used -= sum(costs[start:following])
        start = following
    return start
