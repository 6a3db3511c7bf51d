"""Several model hosts in one process: settings, rendezvous routing, health,
cooldowns, per-host slots with one line, failover in the chat service."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from piagent.agents import Agent
from piagent.chat import ChatService
from piagent.errors import (
    ClientGone,
    GenerationTimeout,
    ModelMissing,
    ProviderBusy,
    ProviderFailed,
    ProviderTimeout,
    ProviderUnreachable,
    QueueFull,
    StreamBroken,
)
from piagent.generation_queue import Route
from piagent.host_queue import HostQueue
from piagent.providers import Readiness, Reply, Usage
from piagent.providers.base import ModelState, ToolCall
from piagent.providers.hosts import HostRouter, host_failure, weight
from piagent.settings import Settings, SettingsError
from piagent.tools import build_toolbox

A, B, C = "http://a:11434", "http://b:11434", "http://c:11434"
MODEL = "m"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeHost:
    """A provider whose outcome the test sets: a reply, or an error to raise."""

    name = "ollama"

    def __init__(self, host: str, models: tuple[str, ...] = (MODEL,)) -> None:
        self.host = host
        self.listed = models
        self.error: Exception | None = None
        self.reachable = True
        self.calls = 0

    def complete(self, model, messages, options=None):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return Reply(f"from {self.host}", model, Usage())

    def stream(self, model, messages, options=None):
        raise NotImplementedError

    def probe(self, models):
        return [] if self.reachable else [f"{self.host} is down"]

    def readiness(self, models):
        if not self.reachable:
            return Readiness({}, problem=f"unreachable at {self.host}")
        states = {m: ModelState(m in self.listed, False) for m in models}
        missing = [m for m in models if m not in self.listed]
        return Readiness(states, problem=f"{missing} missing" if missing else None)

    def warm(self, model):
        pass

    def catalog(self, what, model=None):
        if not self.reachable:
            raise ProviderUnreachable(f"{self.host} refused")
        if what == "show":
            return {"details": {"on": self.host}} if model in self.listed else {}
        return {name: {"name": name, "on": self.host} for name in self.listed}


def router(*hosts: FakeHost, clock=None, cooldown=5.0, cooldown_max=60.0):
    return HostRouter(
        list(hosts),
        cooldown=cooldown,
        cooldown_max=cooldown_max,
        clock=clock or Clock(),
    )


# --- Settings -----------------------------------------------------------------


def test_comma_separated_hosts_are_each_validated():
    s = Settings(ollama_host=f"{A}, {B}/")
    assert s.model_hosts == [A, B]
    assert Settings(
        provider="openai", openai_base_url=f"{A}/v1,{B}/v1"
    ).model_hosts == [
        f"{A}/v1",
        f"{B}/v1",
    ]
    with pytest.raises(SettingsError) as caught:
        Settings(ollama_host=f"{A},ftp://b")
    assert "'ftp://b' is not" in str(caught.value)
    with pytest.raises(SettingsError, match="listed twice"):
        Settings(ollama_host=f"{A},{A}/")
    with pytest.raises(SettingsError, match="not an empty item"):
        Settings(ollama_host=f"{A},,{B}")


def test_one_bad_host_is_refused_with_the_message_of_before():
    with pytest.raises(SettingsError) as caught:
        Settings(ollama_host="pi.local:11434")
    assert str(caught.value) == (
        "OLLAMA_HOST='pi.local:11434': expected an http(s) URL such as "
        "http://127.0.0.1:11434"
    )


def test_the_cooldown_may_not_exceed_its_cap():
    with pytest.raises(
        SettingsError,
        match=r"HOST_COOLDOWN_SECONDS=90: expected at most "
        r"HOST_COOLDOWN_MAX_SECONDS \(60\)",
    ):
        Settings(host_cooldown_seconds=90, host_cooldown_max_seconds=60)


# --- Routing ------------------------------------------------------------------


def test_rendezvous_sticks_each_key_to_one_host_and_spreads_keys():
    hosts = router(FakeHost(A), FakeHost(B), FakeHost(C))
    keys = [f"conversation-{i}" for i in range(600)]
    first = {key: hosts.order(key, MODEL)[0] for key in keys}
    assert first == {key: hosts.order(key, MODEL)[0] for key in keys}
    spread = Counter(first.values())
    assert set(spread) == {A, B, C}
    assert min(spread.values()) > 150  # about a third each


def test_a_host_that_goes_away_moves_only_its_own_conversations():
    clock = Clock()
    a, b, c = FakeHost(A), FakeHost(B), FakeHost(C)
    hosts = router(a, b, c, clock=clock)
    keys = [f"k{i}" for i in range(300)]
    before = {key: hosts.order(key, MODEL)[0] for key in keys}
    b.error = ProviderUnreachable("refused")
    with pytest.raises(ProviderUnreachable):
        hosts.attempt(B, MODEL, lambda p: p.complete(MODEL, []))
    after = {key: hosts.order(key, MODEL)[0] for key in keys}
    moved = {key for key in keys if before[key] != after[key]}
    assert moved == {key for key in keys if before[key] == B}
    assert B not in after.values()
    # Each moved conversation goes to its second heaviest host.
    for key in moved:
        ranked = sorted([A, B, C], key=lambda url: weight(url, key), reverse=True)
        assert after[key] == ranked[1]


def test_hosts_without_the_model_are_left_out_and_all_down_means_try_anyway():
    clock = Clock()
    a, b = FakeHost(A, models=("other",)), FakeHost(B)
    hosts = router(a, b, clock=clock)
    hosts.refresh([MODEL, "other"])
    assert hosts.order("x", MODEL) == [B]
    assert hosts.order("x", "other") == [A]
    b.error = ProviderUnreachable("refused")
    with pytest.raises(ProviderUnreachable):
        hosts.attempt(B, MODEL, lambda p: p.complete(MODEL, []))
    # No healthy host has it: every host, by weight, so the attempt can say why.
    assert sorted(hosts.order("x", MODEL)) == [A, B]


def test_a_failed_host_is_down_for_a_doubling_capped_cooldown():
    clock = Clock()
    a, b = FakeHost(A), FakeHost(B)
    hosts = router(a, b, clock=clock, cooldown=5, cooldown_max=12)
    a.error = ProviderUnreachable("refused")
    downs = []
    for _ in range(4):
        with pytest.raises(ProviderUnreachable):
            hosts.attempt(A, MODEL, lambda p: p.complete(MODEL, []))
        state = hosts.states()[0]
        downs.append(state.down_until - clock.now)
        clock.now = state.down_until  # the cooldown ran out: it is tried again
        assert hosts.up(A)
    assert downs == [5, 10, 12, 12]
    a.error = None
    hosts.attempt(A, MODEL, lambda p: p.complete(MODEL, []))
    assert hosts.states()[0].failures == 0


def test_the_probe_brings_a_host_back_before_its_cooldown_ends():
    clock = Clock()
    a, b = FakeHost(A), FakeHost(B)
    hosts = router(a, b, clock=clock, cooldown=30)
    a.reachable = False
    hosts.refresh([MODEL])
    assert not hosts.up(A) and hosts.up(B)
    a.reachable = True
    hosts.refresh([MODEL])
    assert hosts.up(A)


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ProviderUnreachable("refused"), True),
        (ProviderTimeout("no first byte"), True),
        (ProviderBusy("busy"), True),
        (ModelMissing("not pulled"), True),
        (ProviderFailed("HTTP 500", upstream_status=500), True),
        (ProviderFailed("error line before any text"), True),
        (ProviderFailed("HTTP 400: bad request", upstream_status=400), False),
        (StreamBroken("dropped mid-reply"), False),
        (GenerationTimeout("deadline"), False),
    ],
)
def test_which_failures_are_the_hosts(error, retried):
    assert host_failure(error) is retried


def test_a_missing_model_leaves_the_host_up_for_other_models():
    a, b = FakeHost(A), FakeHost(B)
    hosts = router(a, b)
    a.error = ModelMissing("not pulled")
    with pytest.raises(ModelMissing):
        hosts.attempt(A, MODEL, lambda p: p.complete(MODEL, []))
    assert hosts.up(A)
    assert hosts.order("k", MODEL) == [B]
    assert A in hosts.order("k", "other")


def test_readiness_lists_each_host_and_needs_each_model_on_a_healthy_one():
    a, b = FakeHost(A, models=("other",)), FakeHost(B)
    hosts = router(a, b)
    ready = hosts.readiness([MODEL, "other"])
    assert ready.ready
    assert [(h.url, h.up, h.models) for h in ready.hosts] == [
        (A, True, ["other"]),
        (B, True, [MODEL]),
    ]
    b.reachable = False
    ready = hosts.readiness([MODEL, "other"])
    assert not ready.ready
    assert f"model {MODEL!r} is on no healthy model host" in ready.problem
    assert f"unreachable at {B}" in ready.problem
    assert ready.hosts[1].up is False and ready.hosts[1].detail


def test_one_host_is_passed_through_unchanged():
    a = FakeHost(A)
    hosts = router(a)
    assert hosts.single and hosts.order("k", MODEL) == [A]
    a.reachable = False
    assert hosts.readiness([MODEL]) == a.readiness([MODEL])
    a.error = ProviderUnreachable("refused")
    with pytest.raises(ProviderUnreachable):
        hosts.attempt(A, MODEL, lambda p: p.complete(MODEL, []))
    assert hosts.up(A)  # nothing to route around: never left out


def test_the_ollama_catalog_spans_every_host_that_answers():
    a, b = FakeHost(A, ("m", "shared")), FakeHost(B, ("n", "shared"))
    hosts = router(a, b)
    tags = hosts.catalog("tags")
    assert sorted(tags) == ["m", "n", "shared"]
    assert tags["shared"]["on"] == A  # the first host's entry, in configured order
    assert hosts.catalog("show", "n") == {"details": {"on": B}}
    assert hosts.catalog("show", "absent") == {}
    a.reachable = False
    assert sorted(hosts.catalog("tags")) == ["n", "shared"]
    assert hosts.up(A)  # a listing that fails takes no host down; the probe does
    b.reachable = False
    with pytest.raises(ProviderUnreachable):
        hosts.catalog("ps")


# --- Slots per host, one line ---------------------------------------------------


def fixed(*hosts: str) -> Route:
    return Route(lambda avoid: [h for h in hosts if h != avoid] or list(hosts))


def host_queue(concurrent=1, queued=4, wait=float("inf")) -> HostQueue:
    return HostQueue([A, B], concurrent, queued, 60.0, poll_seconds=0.01, max_wait=wait)


def acquire_in_thread(queue, route, results, present=lambda: True):
    def run():
        try:
            results.append(queue.acquire(present, route))
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            results.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_until(condition) -> None:
    event = threading.Event()
    for _ in range(500):
        if condition():
            return
        event.wait(0.01)
    raise AssertionError("condition never became true")


def test_each_host_has_its_own_slots():
    queue = host_queue()
    on_a, on_b = queue.acquire(route=fixed(A)), queue.acquire(route=fixed(B))
    assert (on_a.host, on_b.host) == (A, B)
    assert queue.busy(A) == queue.busy(B) == 1
    on_a.release()
    on_b.release()
    assert queue.active == 0


def test_a_request_waits_for_its_own_host_even_when_another_is_free():
    queue = host_queue()
    holder = queue.acquire(route=fixed(A))
    results: list = []
    thread = acquire_in_thread(queue, fixed(A, B), results)
    wait_until(lambda: queue.waiting == 1)
    assert queue.busy(B) == 0  # B is free, and it still waits for A
    holder.release()
    thread.join(5)
    assert results[0].host == A
    results[0].release()


def test_one_line_first_come_first_served_per_host_and_newcomers_wait_behind():
    queue = host_queue()
    holders = [queue.acquire(route=fixed(A)), queue.acquire(route=fixed(B))]
    results: list = []
    threads = []
    for count, route in enumerate((fixed(A), fixed(B), fixed(A)), 1):
        threads.append(acquire_in_thread(queue, route, results))
        wait_until(lambda count=count: queue.waiting == count)
    holders[1].release()  # B frees: the second in line (the only one for B)
    wait_until(lambda: len(results) == 1)
    assert results[0].host == B
    holders[0].release()  # A frees: the first in line, not the third
    wait_until(lambda: len(results) == 2)
    assert results[1].host == A and queue.waiting == 1
    for slot in results[:2]:
        slot.release()
    for thread in threads:
        thread.join(5)
    assert results[2].host in (A, B)


def test_spread_requests_take_the_least_busy_host():
    queue = host_queue(concurrent=2)
    anywhere = Route(lambda avoid: [A, B], spread=True)
    hosts = [queue.acquire(route=anywhere).host for _ in range(4)]
    assert sorted(hosts) == [A, A, B, B]
    full = host_queue(concurrent=1, queued=0)
    full.acquire(route=fixed(A))
    with pytest.raises(QueueFull) as caught:
        full.acquire(route=fixed(A))
    assert "each of 2 model hosts" in caught.value.detail


def test_a_moved_slot_takes_the_next_host_at_the_head_of_the_line():
    queue = host_queue()
    route = fixed(A, B)
    slot = queue.acquire(route=route)
    holder_b = queue.acquire(route=fixed(B))
    results: list = []
    thread = acquire_in_thread(queue, fixed(B), results)
    wait_until(lambda: queue.waiting == 1)
    moved = threading.Thread(target=slot.move)
    moved.start()
    wait_until(lambda: queue.waiting == 2)
    holder_b.release()  # B frees: the moved slot was first in line
    moved.join(5)
    assert slot.host == B and queue.busy(A) == 0
    slot.release()
    thread.join(5)
    assert results[0].host == B
    results[0].release()
    assert queue.active == 0


def test_a_move_whose_client_leaves_gives_back_no_slot_twice():
    queue = host_queue()
    slot = queue.acquire(route=fixed(A, B))
    holder_b = queue.acquire(route=fixed(B))
    with pytest.raises(ClientGone):
        slot.move(lambda: False)  # B is busy; the client leaves while waiting
    slot.release()  # the caller's finally: A was already given back
    assert (queue.busy(A), queue.busy(B), queue.waiting) == (0, 1, 0)
    holder_b.release()
    assert queue.active == 0


def test_a_request_that_waits_past_max_wait_gets_queue_full():
    queue = host_queue(wait=0.05)
    holder = queue.acquire(route=fixed(A))
    with pytest.raises(QueueFull):
        queue.acquire(route=fixed(A))
    assert queue.waiting == 0 and queue.busy(A) == 1
    holder.release()


def test_a_waiter_whose_client_left_frees_its_place():
    queue = host_queue()
    holder = queue.acquire(route=fixed(A))
    present = threading.Event()
    present.set()
    results: list = []
    thread = acquire_in_thread(queue, fixed(A), results, present.is_set)
    wait_until(lambda: queue.waiting == 1)
    present.clear()
    thread.join(5)
    assert isinstance(results[0], ClientGone) and queue.waiting == 0
    holder.release()
    assert queue.active == 0


# --- Failover in the chat service ----------------------------------------------


def chat_service(hosts: HostRouter) -> ChatService:
    settings = Settings(ollama_host=f"{A},{B}", enable_memory=False)
    agent = Agent("general", "be brief", MODEL)
    queue = HostQueue([A, B], 1, 4, 60.0, poll_seconds=0.01)
    return ChatService(settings, {"general": agent}, hosts, None, queue)


def key_on(hosts: HostRouter, host: str) -> str:
    return next(f"k{i}" for i in range(100) if hosts.order(f"k{i}", MODEL)[0] == host)


def test_a_host_failure_before_any_text_is_retried_once_on_the_next_host():
    a, b = FakeHost(A), FakeHost(B)
    hosts = router(a, b)
    chat = chat_service(hosts)
    a.error = ProviderUnreachable("refused")
    turn = chat.start("hi", "general", key_on(hosts, A))
    assert chat.reply(turn).text == f"from {B}"
    assert (a.calls, b.calls) == (1, 1)
    assert not hosts.up(A)


def test_a_request_error_is_not_retried_and_takes_no_host_down():
    a, b = FakeHost(A), FakeHost(B)
    hosts = router(a, b)
    chat = chat_service(hosts)
    a.error = ProviderFailed("HTTP 400", upstream_status=400)
    with pytest.raises(ProviderFailed):
        chat.reply(chat.start("hi", "general", key_on(hosts, A)))
    assert (a.calls, b.calls) == (1, 0) and hosts.up(A)


def test_a_failure_after_the_first_token_is_not_retried():
    a, b = FakeHost(A), FakeHost(B)
    hosts = router(a, b)
    chat = chat_service(hosts)
    a.error = StreamBroken("dropped")
    with pytest.raises(StreamBroken):
        chat.reply(chat.start("hi", "general", key_on(hosts, A)))
    assert (a.calls, b.calls) == (1, 0)


def test_only_one_retry_when_both_hosts_fail():
    a, b = FakeHost(A), FakeHost(B)
    hosts = router(a, b)
    chat = chat_service(hosts)
    a.error = ProviderUnreachable("a refused")
    b.error = ProviderUnreachable("b refused")
    with pytest.raises(ProviderUnreachable, match="b refused"):
        chat.reply(chat.start("hi", "general", key_on(hosts, A)))
    assert (a.calls, b.calls) == (1, 1)


class ToolStream:
    """A tool agent's round: text chunks, then the calls the model made."""

    def __init__(self, tokens, calls=()):
        self.model, self.usage, self.first_token_at = MODEL, None, None
        self._tokens, self.tool_calls = tokens, list(calls)

    def __iter__(self):
        return iter(self._tokens)

    def batches(self):
        return ([token] for token in self._tokens)

    def close(self):
        pass


class ToolHost(FakeHost):
    """A host whose streams play `rounds`: a clock call, then text."""

    def __init__(self, host: str) -> None:
        super().__init__(host)
        self.rounds = [
            ToolStream([], [ToolCall("call_1", "clock", "{}")]),
            ToolStream([f"from {host}"]),
        ]
        self.fail_on: int | None = None

    def stream(self, model, messages, options=None, tools=None):
        self.calls += 1
        if self.error is not None or self.fail_on == self.calls:
            raise self.error or ProviderUnreachable(f"{self.host} refused")
        return self.rounds[self.calls - 1]


def tool_chat(hosts: HostRouter) -> ChatService:
    settings = Settings(ollama_host=f"{A},{B}", enable_memory=False)
    tools = build_toolbox(["clock"], {}, environ=lambda _: None)
    agent = Agent("general", "be brief", MODEL, tools)
    queue = HostQueue([A, B], 1, 4, 60.0, poll_seconds=0.01)
    return ChatService(settings, {"general": agent}, hosts, None, queue)


def test_a_tool_agents_first_round_moves_off_a_failed_host():
    a, b = ToolHost(A), ToolHost(B)
    hosts = router(a, b)
    chat = tool_chat(hosts)
    a.error = ProviderUnreachable("refused")
    turn = chat.start("what time is it", "general", key_on(hosts, A))
    assert chat.reply(turn).text == f"from {B}"
    assert (a.calls, b.calls) == (1, 2)  # both of the turn's rounds on B
    assert not hosts.up(A)


def test_a_tool_agents_later_round_stays_on_its_host():
    """The client may have seen the first round's events: no move after it."""
    a, b = ToolHost(A), ToolHost(B)
    hosts = router(a, b)
    chat = tool_chat(hosts)
    a.fail_on = 2
    with pytest.raises(ProviderUnreachable):
        chat.reply(chat.start("what time is it", "general", key_on(hosts, A)))
    assert (a.calls, b.calls) == (2, 0)
