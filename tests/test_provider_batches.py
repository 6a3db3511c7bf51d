"""How the Ollama provider groups what one socket read brought, over a real socket.

A loopback server sends canned chunked replies in one write each, so the
provider's first read sees the whole reply, as it does when the model is
faster than the client.
"""

import json
import socket
import threading
from contextlib import closing

import pytest

from piagent.errors import ProviderFailed, ProviderTimeout, StreamBroken, StreamStalled
from piagent.providers.ollama import OllamaProvider

MODEL = "m:1b"
MESSAGES = [{"role": "user", "content": "hi"}]
HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def line(item: dict) -> bytes:
    data = json.dumps(item).encode() + b"\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def token(text: str) -> bytes:
    return line({"model": MODEL, "message": {"role": "assistant", "content": text}})


DONE = line({"model": MODEL, "message": {"content": ""}, "done": True, "eval_count": 4})
END = b"0\r\n\r\n"
# A reply ending in this is sent without it, and the connection closed.
CLOSE = b"<close>"


class CannedServer:
    """Answers each request on a connection with the next canned reply, in one send."""

    def __init__(self, *replies: bytes):
        self.replies = list(replies)
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket):
        buffer = b""
        with conn:
            while self.replies:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r")[0])
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                buffer = buffer[length:]
                reply = self.replies.pop(0)
                conn.sendall(reply.removesuffix(CLOSE))
                if reply.endswith(CLOSE):
                    return
            conn.recv(1)

    def close(self):
        self._listener.close()


@pytest.fixture
def canned():
    servers = []

    def start(*replies, timeout=5.0):
        server = CannedServer(*replies)
        servers.append(server)
        provider = OllamaProvider(
            f"http://127.0.0.1:{server.port}",
            timeout=timeout,
            connect_timeout=1.0,
            keep_alive="5m",
            options={},
        )
        return server, provider

    yield start
    for server in servers:
        server.close()


def test_tokens_that_arrived_together_are_one_batch_after_the_first_alone(canned):
    reply = HEAD + token("a") + token("b") + token("c") + token("d") + DONE + END
    _, provider = canned(reply)
    stream = provider.stream(MODEL, MESSAGES)
    assert list(stream.batches()) == [["a"], ["b", "c", "d"]]
    assert stream.usage.reply_tokens == 4
    stream.close()


def test_text_before_a_bad_line_in_the_same_read_still_comes_out(canned):
    bad = line({"error": "out of memory"})
    _, provider = canned(HEAD + token("a") + token("b") + token("c") + bad + END)
    stream = provider.stream(MODEL, MESSAGES)
    batches = stream.batches()
    assert next(batches) == ["a"]
    assert next(batches) == ["b", "c"]
    with pytest.raises(StreamBroken, match="out of memory"):
        next(batches)
    stream.close()


def test_a_bad_first_line_is_a_failure_before_any_text(canned):
    _, provider = canned(HEAD + line({"error": "no such model"}) + END)
    with pytest.raises(ProviderFailed, match="no such model"):
        provider.stream(MODEL, MESSAGES)


def test_a_reply_read_to_its_end_gives_the_connection_back(canned):
    reply = HEAD + token("a") + token("b") + DONE + END
    server, provider = canned(reply, reply, reply)
    for _ in range(3):
        assert provider.complete(MODEL, MESSAGES).text == "ab"
    assert server.connections == 1


def test_a_stream_closed_early_closes_its_connection(canned):
    reply = HEAD + token("a") + token("b") + DONE + END
    server, provider = canned(HEAD + token("a") + token("b"), reply)
    stream = provider.stream(MODEL, MESSAGES)
    assert next(iter(stream)) == "a"
    stream.close()
    assert provider.complete(MODEL, MESSAGES).text == "ab"
    assert server.connections == 2


def test_bad_chunk_framing_before_any_text_is_a_failure(canned):
    _, provider = canned(HEAD + b"zz\r\n{}\r\n" + END)
    with pytest.raises(ProviderFailed, match="cut its reply short"):
        provider.stream(MODEL, MESSAGES)


@pytest.mark.parametrize(
    "tail",
    [b"2\r\nabXY\r\n", b"5\r\nab" + CLOSE],
    ids=["no-crlf-after-data", "closed-mid-chunk"],
)
def test_a_body_broken_after_text_breaks_the_stream(canned, tail):
    _, provider = canned(HEAD + token("a") + tail)
    with closing(provider.stream(MODEL, MESSAGES)) as stream:
        batches = stream.batches()
        assert next(batches) == ["a"]
        with pytest.raises(StreamBroken, match="dropped the stream"):
            next(batches)


def test_silence_before_the_first_token_is_a_timeout(canned):
    _, provider = canned(HEAD, timeout=0.3)
    with pytest.raises(ProviderTimeout, match="OLLAMA_TIMEOUT"):
        provider.stream(MODEL, MESSAGES)


def test_silence_after_text_is_a_stalled_stream(canned):
    _, provider = canned(HEAD + token("a"), timeout=0.3)
    with closing(provider.stream(MODEL, MESSAGES)) as stream:
        batches = stream.batches()
        assert next(batches) == ["a"]
        with pytest.raises(StreamStalled, match="mid-reply"):
            next(batches)
