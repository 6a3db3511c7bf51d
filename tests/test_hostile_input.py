"""Hostile input: random bodies, encodings, content types and headers at /chat.

Whatever arrives, the answer is never a 5xx other than the provider's 502/503/504,
always JSON {"detail"} when it is an error, and a refused request leaves memory
and the model untouched. In-process for many examples (memory is inspected
directly), then fewer through the real gunicorn for what only it parses.
"""

import json
import socket

import pytest
from hypothesis import HealthCheck, event, given, reject, settings
from hypothesis import strategies as st

from tests.support.fake_ollama import Behaviour

KEY = "kitchen-tablet-0123456789abcdef"
PROVIDER_STATUSES = {502, 503, 504}
FAST = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
chat_bodies = st.fixed_dictionaries(
    {},
    optional={
        "message": st.one_of(
            st.text(max_size=60),
            # Lone surrogates: valid JSON escapes, but no valid Unicode.
            st.sampled_from(["\ud800", "hi \udfff there"]),
            json_values,
        ),
        "agent": st.one_of(
            st.sampled_from(["general", "../general", "GENERAL", "x" * 65, ""]),
            json_values,
        ),
        "stream": st.one_of(st.booleans(), json_values),
        "conversation_id": st.one_of(
            st.text(max_size=140), st.sampled_from(["ok-1", "a\r\nX: y"]), json_values
        ),
    },
)
encodings = st.sampled_from(["utf-8", "utf-16", "utf-32", "latin-1", "utf-8-sig"])


class Body(bytes):
    """Bytes that print short, so a failing example of 70 kB stays readable."""

    def __repr__(self) -> str:
        if len(self) <= 200:
            return bytes.__repr__(self)
        return f"<{len(self)} bytes: {bytes(self[:40])!r}...>"


valid_chats = st.fixed_dictionaries(
    {"message": st.text(min_size=1, max_size=40).filter(str.strip)},
    optional={
        "stream": st.booleans(),
        "conversation_id": st.from_regex(r"[A-Za-z0-9._:-]{1,20}", fullmatch=True),
        "extra": json_values,
    },
)


@st.composite
def bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["valid", "chat", "json", "bytes", "big"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "big":
        return Body(json.dumps({"message": "x" * 70_000}).encode())
    strategy = {"valid": valid_chats, "chat": chat_bodies}.get(kind, json_values)
    value = draw(strategy)
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    return text.encode(draw(encodings), errors="replace")


content_types = st.one_of(
    st.just("application/json"),
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-16",
            "APPLICATION/JSON",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=zz",
            "",
        ]
    ),
    st.text(max_size=40),
)
header_names = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"),
    min_size=1,
    max_size=20,
)
header_values = st.text(
    st.characters(min_codepoint=32, max_codepoint=255), max_size=60
).map(str.strip)
headers = st.dictionaries(
    st.one_of(
        header_names,
        st.sampled_from(
            [
                "Authorization",
                "X-API-Key",
                "Content-Length",
                "Transfer-Encoding",
                "Host",
                "Origin",
            ]
        ),
    ),
    header_values,
    max_size=4,
)


# Model failures too, so the provider's statuses are part of the mix.
faults = st.sampled_from([None, None, None, "status_500", "status_503", "error_line"])


def memory_state(app):
    store = app.extensions["piagent"].memory
    with store._lock:
        return [
            (cid, list(c.messages), c.touched)
            for cid, c in store._conversations.items()
        ]


def check_answer(status: int, content_type: str, body: bytes) -> None:
    event(f"status {status}")
    assert status < 500 or status in PROVIDER_STATUSES, (status, body[:300])
    if status >= 400:
        assert content_type == "application/json", (status, body[:300])
        payload = json.loads(body)
        assert set(payload) == {"detail"}
        assert b"Traceback" not in body


@pytest.fixture
def apps(make_app):
    return {"open": make_app(), "keys": make_app(api_keys=KEY)}


@pytest.mark.parametrize("variant", ["open", "keys"])
@FAST
@given(body=bodies(), content_type=content_types, extra=headers, fault=faults)
def test_random_requests_never_break_the_contract(
    apps, ollama, variant, body, content_type, extra, fault
):
    app = apps[variant]
    ollama.behaviour = Behaviour(fault=fault)
    sent = dict(extra)
    if content_type:
        sent["Content-Type"] = content_type
    if variant == "keys" and "Authorization" not in sent and "X-API-Key" not in sent:
        sent["Authorization"] = f"Bearer {KEY}"
    before, asked = memory_state(app), len(ollama.requests)
    try:
        response = app.test_client().post("/chat", data=body, headers=sent)
    except (ValueError, UnicodeError):
        reject()  # a header werkzeug's test client cannot build: no request sent
    try:
        data = response.get_data()
    except ConnectionResetError:
        # A stream the model broke off after its first token: the contract's
        # incomplete transfer (StreamAborted), never an error status.
        assert (response.status_code, response.mimetype) == (200, "text/plain")
        return
    check_answer(response.status_code, response.mimetype, data)
    if 400 <= response.status_code < 500:
        assert memory_state(app) == before
        assert len(ollama.requests) == asked


def send_raw(
    port: int, head: bytes, body: bytes, half_close: bool = False
) -> tuple[int, str, bytes]:
    """Send one request; `half_close` ends the sending side, as a client whose
    body fell short of its Content-Length would before waiting for an answer."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(head + body)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered (413) before the whole body was sent
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    head_part, _, payload = received.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    if fields.get("Transfer-Encoding") == "chunked":
        payload = dechunk(payload)
    return status, fields.get("Content-Type", ""), payload


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


token_headers = st.dictionaries(
    st.from_regex(r"X-[A-Za-z0-9-]{1,12}", fullmatch=True),
    st.from_regex(r"[!-~]{0,40}", fullmatch=True),
    max_size=4,
)


@settings(
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=bodies(),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "application/json; charset=latin-1"]
    ),
    chunked=st.booleans(),
    framing=st.sampled_from(["intact", "intact", "bad-chunk-size", "short-body"]),
    extra=token_headers,
    fault=faults,
)
def test_random_requests_through_gunicorn_never_break_the_contract(
    server, ollama, body, content_type, chunked, framing, extra, fault
):
    ollama.behaviour = Behaviour(fault=fault)
    asked = len(ollama.requests)
    lines = [
        "POST /chat HTTP/1.1",
        "Host: localhost",
        "Connection: close",
        f"Content-Type: {content_type}",
        *(f"{name}: {value}" for name, value in extra.items()),
    ]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        payload = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 100]), body[i : i + 100])
            for i in range(0, len(body), 100)
        )
        payload += b"0\r\n\r\n"
        if framing == "bad-chunk-size":
            payload = b"zz\r\n" + payload
    else:
        lines.append(f"Content-Length: {len(body)}")
        payload = body
        if framing == "short-body" and body:
            payload = body[:-1]  # the client promises a byte it never sends
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    short = framing == "short-body" and not chunked and bool(body)
    status, received_type, data = send_raw(server.port, head, payload, short)
    check_answer(status, received_type.split(";")[0], data)
    if 400 <= status < 500:
        assert len(ollama.requests) == asked


@pytest.mark.parametrize(
    "head",
    [
        b"X-Big: " + b"a" * 9000 + b"\r\n",
        b"".join(b"X-H%d: v\r\n" % i for i in range(120)),
    ],
    ids=["one-huge-header", "too-many-headers"],
)
def test_oversized_headers_are_refused_by_gunicorn_before_piagent(server, ollama, head):
    body = b'{"message": "hi"}'
    status, content_type, _ = send_raw(
        server.port,
        b"POST /chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        + head
        + b"Content-Length: %d\r\n\r\n" % len(body),
        body,
    )
    assert status in (400, 431)
    assert content_type.startswith("text/html")
    assert ollama.requests == []


def test_a_broken_chunk_size_is_a_json_400_not_a_500(server, ollama):
    status, content_type, data = send_raw(
        server.port,
        b"POST /chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        b'zz\r\n{"message": "hi"}\r\n0\r\n\r\n',
    )
    assert (status, content_type) == (400, "application/json")
    assert "broken framing" in json.loads(data)["detail"]
    assert ollama.requests == []


def test_a_body_shorter_than_its_length_is_a_json_400(server, ollama):
    body = b'{"message": "hi"}'
    status, content_type, data = send_raw(
        server.port,
        b"POST /chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (len(body) + 5),
        body,
        half_close=True,
    )
    assert (status, content_type) == (400, "application/json")
    assert ollama.requests == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/chat", b'{"message": "\\ud800"}'),
        ("/chat", '{"message": "hi \udfff"}'.encode("utf-16", "surrogatepass")),
        (
            "/v1/chat/completions",
            b'{"model": "general", "messages": '
            b'[{"role": "user", "content": "\\ud800"}]}',
        ),
    ],
    ids=["chat-escape", "chat-utf16", "openai-escape"],
)
def test_a_lone_surrogate_anywhere_in_the_body_is_a_400(server, ollama, path, body):
    status, content_type, data = send_raw(
        server.port,
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n".encode(),
        body,
    )
    assert (status, content_type) == (400, "application/json")
    assert "lone surrogate" in data.decode()
    assert ollama.requests == []


def test_a_surrogate_pair_is_an_ordinary_character(server, ollama):
    body = b'{"message": "smile \\ud83d\\ude00"}'
    status, _, data = send_raw(
        server.port,
        b"POST /chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body),
        body,
    )
    assert status == 200, data
    assert ollama.requests[-1]["messages"][-1]["content"] == "smile \U0001f600"
