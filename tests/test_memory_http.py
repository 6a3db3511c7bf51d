"""Conversation memory through the real server, read back from what Ollama received."""

import json
import socket
import threading
import time

import requests

from tests.support.fake_ollama import DEFAULT_TOKENS, Behaviour

REPLY = "".join(DEFAULT_TOKENS)


def chat(server, message, conversation_id=None, stream=False):
    body = {"message": message, "stream": stream}
    if conversation_id:
        body["conversation_id"] = conversation_id
    response = requests.post(server.url + "/chat", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response


def history_sent(ollama):
    return [(m["role"], m["content"]) for m in ollama.requests[-1]["messages"][1:-1]]


def test_three_turns_carry_the_conversation(server, ollama):
    cid = chat(server, "one").json()["conversation_id"]
    chat(server, "two", cid, stream=True)
    chat(server, "three", cid)
    assert history_sent(ollama) == [
        ("user", "one"),
        ("assistant", REPLY),
        ("user", "two"),
        ("assistant", REPLY),
    ]
    assert ollama.requests[-1]["messages"][-1] == {"role": "user", "content": "three"}


def test_conversations_do_not_mix(server, ollama):
    chat(server, "secret", "alice")
    chat(server, "hello", "bob")
    assert history_sent(ollama) == []


def test_window_keeps_the_last_turns(start_server, ollama):
    server = start_server(MEMORY_MAX_TURNS="2")
    for word in ("a", "b", "c"):
        chat(server, word, "w")
    chat(server, "d", "w")
    assert history_sent(ollama) == [("user", "c"), ("assistant", REPLY)]


def test_disabled_memory_neither_reads_nor_writes(start_server, ollama):
    server = start_server(ENABLE_MEMORY="false")
    chat(server, "one", "x")
    chat(server, "two", "x")
    assert history_sent(ollama) == []


def test_failed_or_rejected_requests_record_nothing(server, ollama):
    ollama.behaviour = Behaviour(fault="status_500")
    requests.post(
        server.url + "/chat",
        json={"message": "lost", "conversation_id": "f"},
        timeout=5,
    )
    requests.post(
        server.url + "/chat",
        json={"message": "", "conversation_id": "f"},
        timeout=5,
    )
    ollama.behaviour = Behaviour()
    chat(server, "next", "f")
    assert history_sent(ollama) == []


def test_partial_stream_is_kept_when_the_model_fails(server, ollama):
    ollama.behaviour = Behaviour(fault="error_line", fault_after=3)
    response = requests.post(
        server.url + "/chat",
        json={"message": "q", "stream": True, "conversation_id": "p"},
        stream=True,
        timeout=10,
    )
    try:
        for _ in response.iter_content(chunk_size=None):
            pass
    except requests.exceptions.ChunkedEncodingError:
        pass
    ollama.behaviour = Behaviour()
    chat(server, "again", "p")
    assert history_sent(ollama) == [
        ("user", "q"),
        ("assistant", "".join(DEFAULT_TOKENS[:3])),
    ]


def read_chunks(sock: socket.socket, count: int) -> bytes:
    """Read the response head and `count` chunks off a raw socket."""
    data = b""
    while data.count(b"\r\n") < 2 * count + 10 and b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    tokens = b""
    while True:
        size_line, sep, rest = body.partition(b"\r\n")
        if sep and size_line and len(rest) >= int(size_line, 16) + 2:
            tokens += rest[: int(size_line, 16)]
            body = rest[int(size_line, 16) + 2 :]
            count -= 1
            if count == 0:
                return tokens
            continue
        body += sock.recv(4096)


def test_client_leaving_closes_upstream_and_keeps_the_partial_reply(server, ollama):
    tokens = [f"w{i} " for i in range(60)]
    ollama.behaviour = Behaviour(tokens=tokens, delay=0.05)
    body = json.dumps({"message": "long", "stream": True, "conversation_id": "gone"})
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(
        b"POST /chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
    )
    seen = read_chunks(sock, 3)
    sock.close()
    left = time.monotonic()
    disconnect = ollama.wait_for_disconnect(timeout=5)
    assert disconnect is not None, "upstream never closed"
    assert disconnect.remaining > 0
    assert disconnect.at - left < 1.0
    assert disconnect.sent <= 3 + 3
    ollama.behaviour = Behaviour()
    server.wait_for_log("client left conversation gone")
    chat(server, "still there?", "gone")
    [(user_role, user), (role, kept)] = history_sent(ollama)
    assert (user_role, user, role) == ("user", "long", "assistant")
    assert kept.startswith(seen.decode())
    assert "".join(tokens).startswith(kept)


def test_concurrent_requests_on_one_conversation_lose_and_mix_nothing(
    start_server, ollama
):
    server = start_server(
        MEMORY_MAX_TURNS="200",
        CTX_TOKENS="16384",
        MAX_CONCURRENT_GENERATIONS="50",
    )
    ollama.behaviour = Behaviour(tokens=["ok"], delay=0.01)
    barrier = threading.Barrier(50)
    failures = []

    def one(i: int) -> None:
        barrier.wait()
        response = requests.post(
            server.url + "/chat",
            json={"message": f"q{i}", "conversation_id": "busy"},
            timeout=30,
        )
        if response.status_code != 200:
            failures.append(response.text)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    chat(server, "final", "busy")
    past = history_sent(ollama)
    assert len(past) == 100
    assert all(
        user == ("user", user[1]) and reply == ("assistant", "ok")
        for user, reply in zip(past[::2], past[1::2], strict=True)
    )
    assert sorted(user for _, user in past[::2]) == sorted(f"q{i}" for i in range(50))
