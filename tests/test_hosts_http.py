"""Several model hosts through the real gunicorn, against two fake Ollamas:
stickiness, spread, failover, come-back, /ready and /metrics."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from piagent.providers.hosts import weight
from tests.support.fake_ollama import DEFAULT_TOKENS, Behaviour, FakeOllama
from tests.support.server import MODEL

REPLY = "".join(DEFAULT_TOKENS)
KEY = "metrics-key-0123456789abcdef"


class Hosts:
    """Two fake Ollamas that a test may stop and start again on their ports."""

    def __init__(self) -> None:
        self.fakes = [FakeOllama().start(), FakeOllama().start()]

    @property
    def urls(self) -> list[str]:
        return [fake.url for fake in self.fakes]

    def stop(self, index: int) -> None:
        self.fakes[index].stop()

    def restart(self, index: int) -> FakeOllama:
        old = self.fakes[index]
        behaviour = old.behaviour
        self.fakes[index] = FakeOllama(port=old.port).start()
        self.fakes[index].behaviour = behaviour
        return self.fakes[index]

    def home(self, conversation: str) -> int:
        """Which fake the rendezvous hash gives a conversation."""
        weights = [weight(url, conversation) for url in self.urls]
        return weights.index(max(weights))

    def served(self, conversation: str) -> list[int]:
        """Which fake answered each turn of a conversation, in order of turns."""
        turns = []
        for index, fake in enumerate(self.fakes):
            for body in fake.requests:
                text = body.get("messages", [{}])[-1].get("content", "")
                if text.startswith(f"{conversation} turn "):
                    turns.append((int(text.rsplit(" ", 1)[1]), index))
        return [index for _, index in sorted(turns)]


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    pair = Hosts()
    yield pair
    for fake in pair.fakes:
        fake.stop()


def serve(launch, hosts: Hosts, **env: str):
    settings = {
        "OLLAMA_HOST": ",".join(hosts.urls),
        "OLLAMA_TIMEOUT": "3",
        "RATE_LIMIT_CHAT": "",
        "RATE_LIMIT_DEFAULT": "",
        "HOST_COOLDOWN_SECONDS": "1",
        "HOST_COOLDOWN_MAX_SECONDS": "2",
        "HOST_PROBE_SECONDS": "0.5",
        "METRICS": "true",
    }
    settings.update(env)
    return launch(settings).wait_ready()


def turn(server, conversation: str, n: int, **extra) -> requests.Response:
    body = {"message": f"{conversation} turn {n}", "conversation_id": conversation}
    return requests.post(server.url + "/chat", json={**body, **extra}, timeout=20)


def scrape(server, **headers: str) -> dict[str, float]:
    response = requests.get(server.url + "/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    values = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_conversations_stick_to_their_host_and_spread_over_both(launch, hosts):
    server = serve(launch, hosts)
    conversations = [f"c{i}" for i in range(12)]
    for n in (1, 2, 3):
        for conversation in conversations:
            response = turn(server, conversation, n)
            assert response.status_code == 200, response.text
    homes = set()
    for conversation in conversations:
        home = hosts.home(conversation)
        assert hosts.served(conversation) == [home] * 3
        homes.add(home)
    assert homes == {0, 1}
    assert "2 model hosts: " + ", ".join(hosts.urls) in server.log()


def test_a_stopped_host_moves_only_its_conversations_and_comes_back(launch, hosts):
    server = serve(launch, hosts)
    conversations = [f"s{i}" for i in range(10)]
    for conversation in conversations:
        assert turn(server, conversation, 1).status_code == 200
    on_b = [c for c in conversations if hosts.home(c) == 1]
    assert on_b and len(on_b) < len(conversations)
    hosts.stop(1)
    for conversation in conversations:
        response = turn(server, conversation, 2)
        assert response.status_code == 200, response.text  # none lost
    for conversation in conversations:
        home = hosts.home(conversation)
        assert hosts.served(conversation) == [home, 0]
    ready = requests.get(server.url + "/ready", timeout=10)
    assert ready.status_code == 200  # A still serves the model
    states = {h["url"]: h["state"] for h in ready.json()["hosts"]}
    assert states == {hosts.urls[0]: "up", hosts.urls[1]: "down"}
    down = ready.json()["hosts"][1]
    assert down["models"] == [] and "unreachable" in down["detail"]
    values = scrape(server)
    # Down whether a request or the probe found out first (a request's
    # failure is also counted in piagent_upstream_errors_total).
    assert values[f'piagent_host_up{{host="{hosts.urls[1]}"}}'] == 0
    # B comes back: the probe sees it and its conversations go home again.
    hosts.restart(1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        hosts_now = requests.get(server.url + "/ready", timeout=10).json()["hosts"]
        if all(h["state"] == "up" for h in hosts_now):
            break
        time.sleep(0.2)
    assert hosts_now[1]["models"] == [MODEL]
    for conversation in on_b:
        assert turn(server, conversation, 3).status_code == 200
        assert hosts.served(conversation)[-1] == 1
    assert scrape(server)[f'piagent_host_up{{host="{hosts.urls[1]}"}}'] == 1


def test_not_ready_while_no_healthy_host_has_a_model(launch, hosts):
    hosts.fakes[1].behaviour = Behaviour(models=("other:1b",))
    server = serve(launch, hosts)
    hosts.stop(0)
    response = requests.get(server.url + "/ready", timeout=10)
    assert response.status_code == 503
    body = response.json()
    assert f"model '{MODEL}' is on no healthy model host" in body["detail"]
    assert [h["state"] for h in body["hosts"]] == ["down", "up"]
    assert body["models"] == {MODEL: {"pulled": False, "loaded": False}}


def test_a_failure_after_the_first_token_is_not_retried(launch, hosts):
    for fake in hosts.fakes:
        fake.behaviour = Behaviour(fault="drop", fault_after=2)
    server = serve(launch, hosts)
    conversation = "broken"
    home = hosts.home(conversation)
    body = {"message": f"{conversation} turn 1", "conversation_id": conversation}
    response = requests.post(
        server.url + "/chat", json={**body, "stream": True}, stream=True, timeout=20
    )
    assert response.status_code == 200
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        b"".join(response.iter_content(None))
    assert hosts.served(conversation) == [home]  # the other host was not asked
    assert len(hosts.fakes[1 - home].requests) == 0
    assert scrape(server)['piagent_upstream_errors_total{kind="stream_broken"}'] == 1


def test_a_host_that_fails_before_the_first_token_is_retried_on_the_other(
    launch, hosts
):
    server = serve(launch, hosts)
    conversation = "retried"
    home = hosts.home(conversation)
    hosts.fakes[home].behaviour = Behaviour(fault="status_500")
    response = turn(server, conversation, 1, stream=True)
    assert response.status_code == 200 and response.text == REPLY
    # Asked first at home (which failed), then once at the other host: had it
    # gone to the other host first, home would not have been asked at all.
    assert len(hosts.fakes[home].requests) == len(hosts.fakes[1 - home].requests) == 1
    assert scrape(server)['piagent_upstream_errors_total{kind="failed"}'] == 1


def test_stateless_requests_go_to_the_least_busy_host(launch, hosts):
    for fake in hosts.fakes:
        fake.behaviour = Behaviour(tokens=[f"t{i} " for i in range(20)], delay=0.1)
    server = serve(launch, hosts)
    body = {"model": "general", "messages": [{"role": "user", "content": "hi"}]}
    results = []

    def one() -> None:
        url = server.url + "/v1/chat/completions"
        results.append(requests.post(url, json=body, timeout=20).status_code)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.3)
    for thread in threads:
        thread.join(30)
    assert results == [200, 200]
    assert [len(fake.requests) for fake in hosts.fakes] == [1, 1]


def test_metrics_count_requests_turns_and_tokens_as_one_set_over_two_workers(
    launch, hosts
):
    server = serve(launch, hosts, WORKERS="2")
    for i in range(6):
        assert turn(server, f"m{i}", 1).status_code == 200
    for _ in range(5):
        assert requests.get(server.url + "/agents", timeout=10).ok
    # Whichever worker answers, the scrape is the sum of both.
    for _ in range(4):
        values = scrape(server)
        assert values['piagent_http_requests_total{endpoint="/chat",status="200"}'] == 6
        assert (
            values['piagent_http_requests_total{endpoint="/agents",status="200"}'] == 5
        )
        assert (
            values[f'piagent_time_to_first_token_seconds_count{{model="{MODEL}"}}'] == 6
        )
        assert values[f'piagent_reply_tokens_total{{model="{MODEL}"}}'] == 6 * len(
            DEFAULT_TOKENS
        )
        assert values["piagent_generations_waiting"] == 0
        assert values["piagent_conversations_stored"] >= 1
    assert re.search(r"metrics: values of the workers in \S+", server.log())


def test_metrics_need_the_key_and_are_never_rate_limited(launch, hosts):
    server = serve(launch, hosts, API_KEYS=KEY, RATE_LIMIT_DEFAULT="2/minute")
    assert requests.get(server.url + "/metrics", timeout=10).status_code == 401
    for _ in range(5):
        scrape(server, Authorization=f"Bearer {KEY}")
    # Other endpoints are still limited.
    statuses = [
        requests.get(
            server.url + "/agents", headers={"X-API-Key": KEY}, timeout=10
        ).status_code
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]


def test_metrics_are_off_unless_asked_for(launch, hosts):
    server = serve(launch, hosts, METRICS="false")
    assert requests.get(server.url + "/metrics", timeout=10).status_code == 404
