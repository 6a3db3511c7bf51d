"""Cuts in blocks: the window rule, on every backend, and the prompts it renders.

The point of the rule is that turn N+1's prompt starts with turn N's prompt and
reply, so a model server's prompt cache is reused; it may only differ after a
cut, which must be rare, whole exchanges, and the same in every worker.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import uuid
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from piagent.agents import Agent
from piagent.chat import ChatService, estimate_tokens
from piagent.errors import MemoryUnavailable
from piagent.generation_queue import GenerationQueue
from piagent.memory import LocalMemoryStore, Message, StoredCall, sqlite_store
from piagent.memory.base import drop_leading_reply
from piagent.memory.redis_store import RedisMemoryStore
from piagent.memory.sqlite_store import SQLiteMemoryStore
from piagent.memory.window import append_start, fit_start, kept_from, sliding
from piagent.providers import Reply, Usage
from piagent.settings import Settings
from tests.support.redis_server import RedisServer
from tests.test_memory import CONTRACT_REDIS_DB, Backend

SYSTEM = "You are brief."


def make_backend(kind: str, request, tmp_path: Path) -> Backend:
    if kind == "sqlite":
        return Backend("sqlite", str(tmp_path / "memory.sqlite3"))
    if kind == "redis":
        server = request.getfixturevalue("redis_server")
        url = server.url.rsplit("/", 1)[0] + f"/{CONTRACT_REDIS_DB}"
        redis.Redis.from_url(url).flushdb()
        return Backend("redis", url)
    return Backend("memory")


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request, tmp_path: Path) -> Backend:
    return make_backend(request.param, request, tmp_path)


@pytest.fixture(params=["sqlite", "redis"])
def shared_backend(request, tmp_path: Path) -> Backend:
    """The stores that outlive a worker (the in-process one dies with it)."""
    return make_backend(request.param, request, tmp_path)


def windowed(backend: Backend, max_turns: int, trim_to: int):
    """A store of the backend's kind and place, cutting to `trim_to`."""
    return open_window(
        backend.kind, backend.location, max_turns, trim_to, backend.clock
    )


def open_window(kind, location, max_turns, trim_to, clock=None):
    extra = {"clock": clock} if clock else {}
    if kind == "sqlite":
        return SQLiteMemoryStore(
            location, max_turns, 3600.0, 500, **extra, trim_to=trim_to
        )
    if kind == "redis":
        return RedisMemoryStore(
            location, max_turns, 3600.0, 500, **extra, trim_to=trim_to
        )
    return LocalMemoryStore(max_turns, 3600.0, 500, **extra, trim_to=trim_to)


def contents(store, cid: str = "c") -> list[str]:
    return [m.content for m in store.history(cid)]


# --- the rule itself, on role lists -----------------------------------------


def test_kept_from_lands_on_the_oldest_user_message_that_fits():
    roles = ["user", "assistant", "user", "assistant", "user", "assistant"]
    assert [kept_from(roles, keep) for keep in range(8)] == [6, 6, 4, 4, 2, 2, 0, 0]


def test_exchanges_of_any_length_are_cut_whole():
    """Tool calls and results (issue 17) sit inside an exchange."""
    roles = ["user", "assistant", "tool", "assistant", "user", "assistant"]
    assert kept_from(roles, 5) == 4
    assert kept_from(roles, 6) == 0
    assert append_start(roles, 4, 8, 2) == 4
    assert append_start(roles, 2, 8, 2) == 0
    assert append_start(roles, 9, 8, 2) is None


def test_a_window_that_opens_with_a_reply_is_cut_at_its_first_question():
    roles = ["assistant", "user", "assistant"]
    assert kept_from(roles, 3) == 1


def test_a_long_exchange_cuts_deeper_than_trim_to():
    roles = ["user", "assistant"] * 3
    assert append_start(roles, 6, 8, 4) == 4


def test_fit_start_keeps_everything_that_fits_and_cuts_to_trim_to_otherwise():
    roles = ["user", "assistant"] * 4
    costs = [10] * 8
    assert fit_start(roles, costs, 5, 85, 8, 2) == 0
    assert fit_start(roles, costs, 5, 84, 8, 2) == 6
    assert fit_start(roles, costs, 5, 14, 8, 2) == 8


def test_sliding_is_todays_window():
    assert [sliding(n) for n in (0, 1, 2, 8)] == [0, 0, 0, 6]


# --- every backend ------------------------------------------------------------


def test_window_is_append_only_until_full_then_cut_to_trim_to(backend):
    store = windowed(backend, 8, 2)
    seen = []
    for i in range(8):
        store.append_exchange("c", f"q{i}", f"a{i}")
        seen.append(contents(store))
    assert seen[3] == ["q0", "a0", "q1", "a1", "q2", "a2", "q3", "a3"]
    assert seen[4] == ["q3", "a3", "q4", "a4"]
    assert seen[5] == ["q3", "a3", "q4", "a4", "q5", "a5"]
    assert seen[6] == ["q3", "a3", "q4", "a4", "q5", "a5", "q6", "a6"]
    assert seen[7] == ["q6", "a6", "q7", "a7"]


def test_trim_to_zero_keeps_only_the_exchange_that_caused_the_cut(backend):
    store = windowed(backend, 4, 0)
    for i in range(3):
        store.append_exchange("c", f"q{i}", f"a{i}")
    assert contents(store) == ["q2", "a2"]


def test_trim_to_max_turns_minus_two_is_the_sliding_window(backend):
    store = windowed(backend, 6, 4)
    for i in range(6):
        store.append_exchange("c", f"q{i}", f"a{i}")
        expected = [f"{k}{j}" for j in range(max(0, i - 2), i + 1) for k in "qa"]
        assert contents(store) == expected


def test_an_exchange_longer_than_max_turns_keeps_nothing(backend):
    store = windowed(backend, 1, 0)
    store.append_exchange("c", "q0", "a0")
    assert store.history("c") == []
    found = store.conversation("c")
    assert found is not None and found.messages == []


def test_cut_keeps_at_most_keep_messages_from_a_question_on(backend):
    store = windowed(backend, 20, 2)
    for i in range(4):
        store.append_exchange("c", f"q{i}", f"a{i}")
    store.cut("c", 5)
    assert contents(store) == ["q2", "a2", "q3", "a3"]
    store.cut("c", 5)  # idempotent: a second worker making the same cut
    assert contents(store) == ["q2", "a2", "q3", "a3"]
    store.cut("c", 0)
    assert store.history("c") == []
    assert store.conversation("c") is not None
    store.append_exchange("c", "q4", "a4")
    assert contents(store) == ["q4", "a4"]


def test_cut_of_an_unknown_conversation_is_no_error(backend):
    store = windowed(backend, 8, 2)
    store.cut("never-seen", 2)
    assert store.conversation("never-seen") is None


def test_cut_is_not_activity(backend):
    store = windowed(backend, 8, 2)
    store.append_exchange("c", "q", "a")
    backend.advance(50)
    store.cut("c", 2)
    assert store.conversation("c").updated_at == pytest.approx(backend.clock.now - 50)


def test_a_cut_is_what_a_restarted_worker_reads(shared_backend):
    backend = shared_backend
    store = windowed(backend, 8, 2)
    for i in range(6):
        store.append_exchange("c", f"q{i}", f"a{i}")
    store.cut("c", 2)
    again = windowed(backend, 8, 2)
    assert contents(again) == ["q5", "a5"]
    again.append_exchange("c", "q6", "a6")
    assert contents(store) == ["q5", "a5", "q6", "a6"]


def _append_with_cuts(kind: str, location: str, indices, barrier) -> None:
    _append_concurrently(open_window(kind, location, 6, 2), indices, barrier)


def _append_concurrently(store, indices, barrier) -> None:
    def append(i: int) -> None:
        barrier.wait()
        store.append_exchange("c", f"q{i}", f"a{i}")
        if i % 3 == 0:
            store.cut("c", 3)

    threads = [threading.Thread(target=append, args=(i,)) for i in indices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_concurrent_appends_and_cuts_keep_whole_exchanges(backend):
    """Cuts are atomic with the exchanges: never half an exchange, never a
    window over the limit, whatever interleaves."""
    store = windowed(backend, 6, 2)
    if backend.kind == "memory":
        _append_concurrently(store, range(30), threading.Barrier(30))
    else:
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(30)
        processes = [
            context.Process(
                target=_append_with_cuts,
                args=(backend.kind, backend.location, range(p, 30, 3), barrier),
            )
            for p in range(3)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
        assert [process.exitcode for process in processes] == [0] * 3
    window = store.history("c")
    assert 2 <= len(window) <= 6 and len(window) % 2 == 0
    for question, reply in zip(window[::2], window[1::2], strict=True):
        assert question.role == "user" and reply.role == "assistant"
        assert question.content[1:] == reply.content[1:]


# --- the prompts a conversation renders, on every backend ---------------------


class RecordingProvider:
    """Answers each turn with the next scripted reply and keeps every prompt."""

    name = "fake"

    def __init__(self, replies):
        self.replies = list(replies)
        self.prompts: list[list[dict[str, str]]] = []

    def complete(self, model, messages, options=None):
        self.prompts.append([dict(m) for m in messages])
        return Reply(self.replies[len(self.prompts) - 1], model, Usage())


def converse(store, settings: Settings, turns: list[tuple[str, str]], cid: str):
    provider = RecordingProvider([reply for _, reply in turns])
    agent = Agent("general", SYSTEM, "m")
    chat = ChatService(
        settings, {"general": agent}, provider, store, GenerationQueue(1, 0, 60.0)
    )
    for message, _ in turns:
        chat.reply(chat.start(message, "general", cid))
    return provider.prompts


def check_prompts(prompts, turns, settings: Settings) -> list[int]:
    """The property; returns the indices of the cut turns."""
    budget = settings.ctx_tokens - settings.max_tokens
    cuts = []
    for n, prompt in enumerate(prompts):
        history = prompt[1:-1]
        assert prompt[0] == {"role": "system", "content": SYSTEM}
        assert prompt[-1] == {"role": "user", "content": turns[n][0]}
        assert not history or history[0]["role"] == "user"
        if n == 0:
            assert history == []
            continue
        previous = prompts[n - 1]
        reply = {"role": "assistant", "content": turns[n - 1][1]}
        extended = [*previous, reply]
        if prompt[: len(extended)] == extended:
            continue
        # A cut: only the oldest whole exchanges went, and only because the
        # window would have outgrown MEMORY_MAX_TURNS or the token budget.
        cuts.append(n)
        whole = extended[1:]
        assert not history or history == whole[-len(history) :]
        cost = sum(estimate_tokens(m["content"]) for m in [*whole, prompt[0]])
        cost += estimate_tokens(turns[n][0])
        assert len(whole) > settings.memory_max_turns or cost > budget
        if len(whole) > settings.memory_max_turns:
            # Cut when the exchange was stored: trim_to messages and it.
            assert len(history) <= settings.memory_trim_to + 2
        else:
            # Cut for the budget, when this turn read it: to trim_to at most.
            assert len(history) <= settings.memory_trim_to
    return cuts


MESSAGE = st.builds(
    lambda text, padding: text + "·" * padding,
    st.text(min_size=1, max_size=6),
    st.integers(min_value=0, max_value=900),
)


@st.composite
def conversations(draw, budget_rules: bool = True):
    max_turns = draw(st.integers(min_value=1, max_value=12))
    trim_to = draw(st.integers(min_value=0, max_value=max_turns - 1))
    ctx = draw(st.sampled_from([512, 2048])) if budget_rules else 100_000
    turns = draw(st.lists(st.tuples(MESSAGE, MESSAGE), min_size=1, max_size=16))
    if not budget_rules:
        turns = [(q[:40], a[:40]) for q, a in turns]
    chosen = Settings(
        memory_max_turns=max_turns,
        memory_trim_to=trim_to,
        ctx_tokens=ctx,
        max_tokens=64,
    )
    return chosen, turns


PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@PROPERTY
@given(case=conversations())
def test_each_prompt_extends_the_last_except_on_a_rare_whole_cut(backend, case):
    chosen, turns = case
    store = windowed(backend, chosen.memory_max_turns, chosen.memory_trim_to)
    cid = uuid.uuid4().hex
    prompts = converse(store, chosen, turns, cid)
    check_prompts(prompts, turns, chosen)
    # The stored window is the last prompt's history plus its exchange, or a
    # cut of it: what the next turn, in any worker, starts from.
    stored = [{"role": m.role, "content": m.content} for m in store.history(cid)]
    last = [*prompts[-1][1:], {"role": "assistant", "content": turns[-1][1]}]
    assert stored == last[len(last) - len(stored) :]


@PROPERTY
@given(case=conversations(budget_rules=False))
def test_count_cuts_come_at_most_once_per_max_turns_minus_trim_to(backend, case):
    chosen, turns = case
    store = windowed(backend, chosen.memory_max_turns, chosen.memory_trim_to)
    cid = uuid.uuid4().hex
    cuts = check_prompts(converse(store, chosen, turns, cid), turns, chosen)
    # Two messages are stored per turn, and a cut keeps whole exchanges, so an
    # odd setting acts as the even number below it.
    max_turns = chosen.memory_max_turns // 2 * 2
    trim_to = chosen.memory_trim_to // 2 * 2
    for earlier, later in zip(cuts, cuts[1:], strict=False):
        assert 2 * (later - earlier) >= max_turns - trim_to


# --- a store that fails during a cut --------------------------------------------


class FailingCut:
    """A store whose history works but whose cut finds the store gone."""

    def __init__(self, store):
        self.store = store
        self.cuts = 0

    def __getattr__(self, name):
        return getattr(self.store, name)

    def cut(self, conversation_id, keep):
        self.cuts += 1
        raise MemoryUnavailable("conversation memory is unavailable (test)")


def test_a_cut_that_fails_is_a_503_before_the_model_is_asked():
    store = FailingCut(open_window("memory", "", 4, 2))
    for i in range(2):
        store.append_exchange("c", f"q{i}", f"a{i}")
    over = Settings(memory_max_turns=2, memory_trim_to=0)
    provider = RecordingProvider(["never"])
    queue = GenerationQueue(1, 0, 60.0)
    chat = ChatService(
        over, {"general": Agent("general", SYSTEM, "m")}, provider, store, queue
    )
    with pytest.raises(MemoryUnavailable):
        chat.reply(chat.start("next", "general", "c"))
    assert store.cuts == 1 and provider.prompts == [] and queue.active == 0
    assert contents(store.store) == ["q0", "a0", "q1", "a1"]


def test_sqlite_locked_during_a_cut_is_unavailable_and_changes_nothing(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT", 0.2)
    path = str(tmp_path / "m.sqlite3")
    store = SQLiteMemoryStore(path, 8, 60, 10, trim_to=2)
    for i in range(3):
        store.append_exchange("c", f"q{i}", f"a{i}")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(MemoryUnavailable, match="database is locked"):
            store.cut("c", 2)
    finally:
        holder.execute("ROLLBACK")
    assert contents(store) == ["q0", "a0", "q1", "a1", "q2", "a2"]


def test_redis_down_during_a_cut_is_unavailable(redis_server, tmp_path):
    own = RedisServer(tmp_path).start()
    try:
        store = RedisMemoryStore(own.url, 8, 3600, 500, timeout=0.5, trim_to=2)
        for i in range(3):
            store.append_exchange("c", f"q{i}", f"a{i}")
        own.stop()
        with pytest.raises(MemoryUnavailable, match="unavailable"):
            store.cut("c", 2)
    finally:
        own.stop()


def test_stored_messages_are_exactly_what_was_sent(backend):
    """Whitespace, newlines and any Unicode come back byte for byte: the next
    prompt must repeat the reply exactly as the model produced it."""
    store = windowed(backend, 8, 2)
    texts = [" lead", "trail \n\n", "\r\n tab\t", "é 🙂 \u2028 \x00", '"[user", x']
    for text in texts:
        store.append_exchange("exact", text, text + " ")
    assert [m.content for m in store.history("exact")][-4:] == [
        texts[-2],
        texts[-2] + " ",
        texts[-1],
        texts[-1] + " ",
    ]


def test_messages_named_like_a_user_entry_do_not_fool_the_redis_cut(backend):
    store = windowed(backend, 4, 1)
    store.append_exchange("c", "q0", '["user", "a0"]')
    store.append_exchange("c", "q1", "a1")
    store.append_exchange("c", "q2", '["user", "a2"]')
    assert store.history("c") == [
        Message("user", "q2"),
        Message("assistant", '["user", "a2"]'),
    ]


# --- exchanges with tool calls (issue 17) ------------------------------------

CALL = StoredCall("call_1", "calculator", '{"expression":"6*7"}')


def tool_exchange(n: int) -> list[Message]:
    """The messages after a user message in a turn that used a tool."""
    call = CALL._replace(id=f"call_{n}")
    return [
        Message("assistant", "", (call,)),
        Message("tool", '{"result": 42}', (), call.id, call.name),
        Message("assistant", f"a{n}"),
    ]


def test_a_tool_exchange_is_stored_and_read_back_exactly(backend):
    store = windowed(backend, 16, 0)
    store.append_exchange("t", "q0", tool_exchange(0))
    store.append_exchange("t", "q1", "plain")
    assert store.history("t") == [
        Message("user", "q0"),
        *tool_exchange(0),
        Message("user", "q1"),
        Message("assistant", "plain"),
    ]
    assert store.conversation("t").messages == store.history("t")


def test_tool_exchanges_are_cut_whole_at_user_messages(backend):
    store = windowed(backend, 8, 4)
    for n in range(3):  # 4 messages each: the third outgrows 8
        store.append_exchange("t", f"q{n}", tool_exchange(n))
    history = store.history("t")
    assert history[0] == Message("user", "q1")
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"] * 2
    assert history[-1] == Message("assistant", "a2")


def test_a_window_opening_with_tool_messages_drops_them(backend):
    """Windows written before cuts in blocks may open with a reply; tool
    results or calls there are dropped the same way."""
    store = windowed(backend, 4, 3)
    store.append_exchange("t", "q0", tool_exchange(0))
    store.append_exchange("t", "q1", "a1")  # 6 > 4: cut to 3, from a question
    assert contents(store, "t") == ["q1", "a1"]
    assert drop_leading_reply(tool_exchange(0) + [Message("user", "q")]) == [
        Message("user", "q")
    ]
