"""The generation queue through the real server: order, 503s, slots always freed."""

import json
import socket
import threading
import time
import uuid

import pytest
import requests

from tests.support.fake_ollama import DEFAULT_TOKENS, Behaviour

REPLY = "".join(DEFAULT_TOKENS)
# One slot, no waiting room, a one-second deadline: a leaked slot shows as a 503.
SINGLE = {
    "MAX_CONCURRENT_GENERATIONS": "1",
    "MAX_QUEUED_GENERATIONS": "0",
    "MAX_GENERATION_SECONDS": "1",
    "OLLAMA_TIMEOUT": "5",
}


def post(server, body, **kwargs):
    kwargs.setdefault("timeout", 20)
    return requests.post(server.url + "/chat", json=body, **kwargs)


def history_sent(ollama, index=-1):
    return [(m["role"], m["content"]) for m in ollama.requests[index]["messages"][1:-1]]


def raw_request(server, body: dict) -> socket.socket:
    data = json.dumps(body)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(
        b"POST /chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(data)}\r\n\r\n{data}".encode()
    )
    return sock


def assert_slot_free(server, ollama, within: float = 5.0):
    """The next request is served: with no waiting room a held slot is a 503."""
    ollama.behaviour = Behaviour()
    deadline = time.monotonic() + within
    while True:
        response = post(server, {"message": "next"})
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert response.status_code == 200, response.text


def test_twenty_streams_one_slot_five_places_six_served_in_order(start_server, ollama):
    server = start_server(MAX_CONCURRENT_GENERATIONS="1", MAX_QUEUED_GENERATIONS="5")
    # About 1.2 s a generation: all twenty are open before the first one ends.
    ollama.behaviour = Behaviour(tokens=[f"t{i} " for i in range(12)], delay=0.1)
    outcomes: dict[int, dict] = {}

    def one(i: int) -> None:
        sent = time.monotonic()
        body = {"message": f"m{i}", "stream": True, "conversation_id": f"c{i}"}
        response = post(server, body, stream=True)
        answered = time.monotonic()
        text = response.content.decode()
        outcomes[i] = {
            "status": response.status_code,
            "sent": sent,
            "answered": answered,
            "ended": time.monotonic(),
            "text": text,
            "retry_after": response.headers.get("Retry-After"),
        }

    threads = []
    for i in range(20):
        thread = threading.Thread(target=one, args=(i,))
        thread.start()
        threads.append(thread)
        time.sleep(0.03)  # a known arrival order, all within 0.6 s
    for thread in threads:
        thread.join(60)
    served = [i for i in range(20) if outcomes[i]["status"] == 200]
    refused = [i for i in range(20) if outcomes[i]["status"] == 503]
    assert served == list(range(6))
    assert refused == list(range(6, 20))
    for i in refused:
        outcome = outcomes[i]
        assert outcome["answered"] - outcome["sent"] < 1.0
        assert int(outcome["retry_after"]) >= 1
        assert "waiting" in json.loads(outcome["text"])["detail"]
    expected = "".join(f"t{i} " for i in range(12))
    for i in served:
        assert outcomes[i]["text"] == expected
    ends = [outcomes[i]["ended"] for i in served]
    assert ends == sorted(ends)
    # One at a time, in arrival order, each with only its own (empty) history.
    assert [r["messages"][-1]["content"] for r in ollama.requests] == [
        f"m{i}" for i in served
    ]
    assert all(len(r["messages"]) == 2 for r in ollama.requests)
    ollama.behaviour = Behaviour(echo=True)
    for i in range(20):
        assert post(server, {"message": "again", "conversation_id": f"c{i}"}).ok
        history = history_sent(ollama)
        assert history == ([("user", f"m{i}"), ("assistant", expected)] * (i < 6))


def test_a_waiting_client_that_leaves_gives_up_its_place(start_server, ollama):
    server = start_server(MAX_CONCURRENT_GENERATIONS="1", MAX_QUEUED_GENERATIONS="1")
    ollama.behaviour = Behaviour(tokens=[f"t{i} " for i in range(20)], delay=0.1)
    holder = post(server, {"message": "first", "stream": True}, stream=True)
    assert holder.status_code == 200
    leaver = raw_request(server, {"message": "leaver"})
    time.sleep(0.5)  # queued behind the first
    leaver.close()
    time.sleep(1.0)  # a waiter checks its client four times a second
    late = {}

    def wait_in_line():
        late["response"] = post(server, {"message": "late"})

    thread = threading.Thread(target=wait_in_line)
    thread.start()
    holder.content  # noqa: B018 - read the first stream to its end
    thread.join(20)
    assert late["response"].status_code == 200
    messages = [r["messages"][-1]["content"] for r in ollama.requests]
    assert messages == ["first", "late"]


def test_a_request_that_waited_too_long_gets_a_503_and_stores_nothing(
    start_server, ollama
):
    server = start_server(
        MAX_CONCURRENT_GENERATIONS="1",
        MAX_QUEUED_GENERATIONS="1",
        MAX_QUEUE_WAIT_SECONDS="0.5",
    )
    ollama.behaviour = Behaviour(tokens=[f"t{i} " for i in range(20)], delay=0.1)
    holder = post(server, {"message": "first", "stream": True}, stream=True)
    assert holder.status_code == 200
    cid = f"waited-{uuid.uuid4().hex}"
    waited = post(server, {"message": "second", "conversation_id": cid})
    holder.content  # noqa: B018 - let the first stream finish
    assert waited.status_code == 503
    assert "MAX_QUEUE_WAIT_SECONDS" in waited.json()["detail"]
    assert int(waited.headers["Retry-After"]) >= 1
    assert [r["messages"][-1]["content"] for r in ollama.requests] == ["first"]
    assert requests.get(f"{server.url}/conversations/{cid}", timeout=5).status_code == (
        404
    )


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_slot_is_freed_after_success(start_server, ollama, stream):
    server = start_server(**SINGLE)
    response = post(server, {"message": "hi", "stream": stream})
    assert response.status_code == 200 and REPLY in response.text
    assert_slot_free(server, ollama)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_slot_is_freed_after_a_failure_before_the_first_token(
    start_server, ollama, stream
):
    server = start_server(**SINGLE)
    ollama.behaviour = Behaviour(fault="status_500")
    assert post(server, {"message": "hi", "stream": stream}).status_code == 502
    assert_slot_free(server, ollama)


def test_slot_is_freed_after_a_stream_breaks(start_server, ollama):
    server = start_server(**SINGLE)
    ollama.behaviour = Behaviour(fault="error_line")
    response = post(server, {"message": "hi", "stream": True}, stream=True)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        response.content  # noqa: B018
    assert_slot_free(server, ollama)


def test_slot_is_freed_when_a_streaming_client_goes(start_server, ollama):
    server = start_server(**SINGLE)
    ollama.behaviour = Behaviour(tokens=[f"w{i} " for i in range(8)], delay=0.05)
    sock = raw_request(server, {"message": "bye", "stream": True})
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    sock.close()
    server.wait_for_log("client left conversation")
    assert_slot_free(server, ollama)


def test_deadline_cuts_a_stream_and_frees_the_slot(start_server, ollama):
    server = start_server(**SINGLE)
    ollama.behaviour = Behaviour(tokens=[f"w{i} " for i in range(40)], delay=0.1)
    started = time.monotonic()
    response = post(server, {"message": "long", "stream": True}, stream=True)
    received = b""
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for chunk in response.iter_content(chunk_size=None):
            received += chunk
    assert time.monotonic() - started < 3.0
    assert received and len(received) < len("".join(f"w{i} " for i in range(40)))
    assert ollama.wait_for_disconnect(timeout=5) is not None
    log = server.wait_for_log("MAX_GENERATION_SECONDS=1")
    assert "Traceback" not in log
    assert_slot_free(server, ollama)


@pytest.mark.parametrize(
    "behaviour",
    [
        Behaviour(tokens=[f"w{i} " for i in range(40)], delay=0.1),
        Behaviour(first_delay=3.0),
    ],
    ids=["mid-reply", "before-first-token"],
)
def test_deadline_makes_a_json_reply_a_504_and_frees_the_slot(
    start_server, ollama, behaviour
):
    server = start_server(**SINGLE)
    ollama.behaviour = behaviour
    conversation = str(uuid.uuid4())
    started = time.monotonic()
    response = post(server, {"message": "long", "conversation_id": conversation})
    assert time.monotonic() - started < 2.5
    assert response.status_code == 504
    assert "MAX_GENERATION_SECONDS=1" in response.json()["detail"]
    assert_slot_free(server, ollama)
    post(server, {"message": "after", "conversation_id": conversation})
    assert history_sent(ollama) == []


def test_deadline_before_the_first_token_of_a_stream_is_a_504(start_server, ollama):
    server = start_server(**SINGLE)
    ollama.behaviour = Behaviour(first_delay=3.0)
    response = post(server, {"message": "slow", "stream": True})
    assert response.status_code == 504
    assert "MAX_GENERATION_SECONDS=1" in response.json()["detail"]
    assert_slot_free(server, ollama)
