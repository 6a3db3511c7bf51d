"""/v1/chat/completions and /v1/models with the official openai client as caller.

Through the real gunicorn, except refusals that need no gevent: those go to
the app in-process, the openai client over httpx's WSGI transport or Flask's
test client.
"""

import json
import threading
import time

import httpx
import openai
import pytest
import requests

from tests.support.fake_ollama import DEFAULT_TOKENS, Behaviour
from tests.support.server import MODEL

REPLY = "".join(DEFAULT_TOKENS)
KEY = "kitchen-tablet-0123456789abcdef"
HELLO = [{"role": "user", "content": "hello"}]


def client_for(server, api_key="unused", **kwargs):
    # No retries: a test that expects an error must see the first answer.
    return openai.OpenAI(
        base_url=server.url + "/v1",
        api_key=api_key,
        max_retries=0,
        timeout=10,
        **kwargs,
    )


@pytest.fixture
def client(server):
    with client_for(server) as client:
        yield client


def in_process_client(app):
    """The openai client calling the app in this process (no gunicorn)."""
    return openai.OpenAI(
        base_url="http://localhost/v1",
        api_key="unused",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.WSGITransport(app=app)),
    )


def sent_messages(ollama):
    return [(m["role"], m["content"]) for m in ollama.requests[-1]["messages"]]


def test_models_are_the_agents(client):
    listed = client.models.list()
    assert [model.id for model in listed.data] == ["general"]
    assert client.models.retrieve("general").owned_by == "piagent"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("nope")
    assert caught.value.code == "model_not_found"


def test_completion_has_openai_shape_and_the_model_servers_counts(client, ollama):
    completion = client.chat.completions.create(model="general", messages=HELLO)
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "general"
    [choice] = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == REPLY
    assert choice.finish_reason == "stop"
    assert completion.usage.completion_tokens == len(DEFAULT_TOKENS)
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_agent_prompt_goes_first_and_the_clients_messages_are_the_history(
    client, ollama
):
    messages = [
        {"role": "developer", "content": "answer in French"},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "un"},
        {"role": "user", "content": [{"type": "text", "text": "two"}]},
    ]
    for _ in range(2):  # stateless: the second call sees only what it sends
        client.chat.completions.create(model="general", messages=messages)
        sent = sent_messages(ollama)
        assert sent[0][0] == "system" and "helpful assistant" in sent[0][1]
        assert sent[1:] == [
            ("system", "answer in French"),
            ("user", "one"),
            ("assistant", "un"),
            ("user", "two"),
        ]
    assert ollama.requests[-1]["model"] == MODEL


def test_temperature_and_max_tokens_are_honoured_up_to_max_tokens(client, ollama):
    client.chat.completions.create(
        model="general", messages=HELLO, temperature=0.1, max_tokens=20
    )
    options = ollama.requests[-1]["options"]
    assert (options["temperature"], options["num_predict"]) == (0.1, 20)
    client.chat.completions.create(
        model="general", messages=HELLO, max_completion_tokens=5000
    )
    assert ollama.requests[-1]["options"]["num_predict"] == 200  # MAX_TOKENS


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_reply_cut_at_max_tokens_finishes_with_length(client, ollama, stream):
    completion = client.chat.completions.create(
        model="general", messages=HELLO, max_tokens=2, stream=stream
    )
    if stream:
        chunks = list(completion)
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        reason = chunks[-1].choices[0].finish_reason
    else:
        text = completion.choices[0].message.content
        reason = completion.choices[0].finish_reason
    assert (text, reason) == ("".join(DEFAULT_TOKENS[:2]), "length")


def test_stream_yields_chunks_then_finish_and_usage(client, ollama):
    stream = client.chat.completions.create(
        model="general",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == len(DEFAULT_TOKENS)


def test_a_reply_that_arrives_at_once_is_still_a_chunk_per_token(client, ollama):
    tokens = [f"w{i} " for i in range(40)]
    ollama.behaviour = Behaviour(tokens=tokens, burst=True)
    stream = client.chat.completions.create(
        model="general", messages=HELLO, stream=True
    )
    deltas = [c.choices[0].delta.content for c in stream if c.choices]
    assert deltas[1:-1] == tokens  # after the role chunk, before the finish


def test_stream_without_include_usage_has_no_usage_chunk(client):
    stream = client.chat.completions.create(
        model="general", messages=HELLO, stream=True
    )
    chunks = list(stream)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_stream_chunks_arrive_as_the_model_emits_them(client, ollama):
    tokens = [f"t{i} " for i in range(6)]
    ollama.behaviour = Behaviour(tokens=tokens, delay=0.1)
    arrivals = []
    stream = client.chat.completions.create(
        model="general", messages=HELLO, stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert len(arrivals) == len(tokens)
    assert min(gaps) > 0.05, gaps


def test_stream_breaking_mid_way_raises_in_the_client(client, ollama):
    ollama.behaviour = Behaviour(fault="error_line", fault_after=2)
    stream = client.chat.completions.create(
        model="general", messages=HELLO, stream=True
    )
    text = ""
    with pytest.raises(openai.APIError, match="boom"):
        for chunk in stream:
            text += chunk.choices[0].delta.content or ""
    assert text == "".join(DEFAULT_TOKENS[:2])


def test_stream_failing_after_the_prime_window_raises_in_the_client(
    start_server, ollama
):
    server = start_server(STREAM_PRIME_SECONDS="0.3", STREAM_PING_SECONDS="0.2")
    ollama.behaviour = Behaviour(first_delay=0.8, fault="status_500")
    with client_for(server) as client:
        stream = client.chat.completions.create(
            model="general", messages=HELLO, stream=True
        )
        with pytest.raises(openai.APIError, match="llama runner") as caught:
            list(stream)
    assert caught.value.code == "model_server_error"


def test_a_slow_first_token_streams_after_pings(start_server, ollama):
    server = start_server(STREAM_PRIME_SECONDS="0.3", STREAM_PING_SECONDS="0.2")
    ollama.behaviour = Behaviour(first_delay=1.0)
    with client_for(server) as client:
        stream = client.chat.completions.create(
            model="general", messages=HELLO, stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == REPLY


def test_a_client_closing_the_stream_closes_the_upstream(client, ollama):
    ollama.behaviour = Behaviour(tokens=[f"w{i} " for i in range(60)], delay=0.05)
    stream = client.chat.completions.create(
        model="general", messages=HELLO, stream=True
    )
    for count, _ in enumerate(stream):
        if count == 3:
            break
    stream.close()
    disconnect = ollama.wait_for_disconnect(timeout=5)
    assert disconnect is not None, "upstream never closed"
    assert disconnect.remaining > 0


@pytest.mark.parametrize(
    ("fault", "error", "status", "code"),
    [
        ("status_500", openai.InternalServerError, 502, "model_server_error"),
        ("status_503", openai.InternalServerError, 503, "model_server_busy"),
        ("drop_before", openai.InternalServerError, 502, "model_server_unreachable"),
        ("hang", openai.InternalServerError, 504, "model_server_timeout"),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_model_server_failures_before_text_keep_their_status(
    client, ollama, fault, error, status, code, stream
):
    ollama.behaviour = Behaviour(fault=fault)
    with pytest.raises(error) as caught:
        client.chat.completions.create(model="general", messages=HELLO, stream=stream)
    assert caught.value.status_code == status
    assert caught.value.code == code
    if status == 503:
        assert int(caught.value.response.headers["Retry-After"]) > 0


def test_a_model_the_server_lacks_is_502_naming_it(client, ollama):
    ollama.behaviour = Behaviour(models=("other:1b",))
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="general", messages=HELLO)
    assert caught.value.status_code == 502
    assert caught.value.code == "model_missing"
    assert f"ollama pull {MODEL}" in caught.value.message


def test_an_unknown_model_is_404_model_not_found(client, ollama):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert caught.value.code == "model_not_found"
    assert "general" in caught.value.message
    assert ollama.requests == []


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user"}]}, "messages.0.content"),
        ({"messages": [{"role": "function", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.tool_call_id"),
        ({"messages": [{"role": "user", "content": "  "}]}, "messages"),
        ({"messages": [{"role": "user", "content": "x" * 4001}]}, "messages"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages.0.content",
        ),
        ({"messages": "hello"}, "messages"),
        ({"n": 2}, "n"),
        ({"stream": "yes"}, "stream"),
        ({"model": None}, "model"),
    ],
)
def test_bad_requests_are_400_naming_the_param(app, ollama, overrides, param):
    body = {"model": "general", "messages": HELLO, **overrides}
    with (
        in_process_client(app) as client,
        pytest.raises(openai.BadRequestError) as (caught),
    ):
        client.chat.completions.create(**body)
    assert caught.value.status_code == 400
    assert caught.value.param == param
    assert caught.value.type == "invalid_request_error"
    assert ollama.requests == []


def test_messages_longer_than_the_context_are_400_context_length_exceeded(
    make_app, ollama
):
    app = make_app(ctx_tokens=256, max_tokens=50)
    messages = [{"role": "user", "content": "word " * 150}]
    with (
        in_process_client(app) as client,
        pytest.raises(openai.BadRequestError) as (caught),
    ):
        client.chat.completions.create(model="general", messages=messages)
    assert caught.value.code == "context_length_exceeded"
    assert "CTX_TOKENS=256" in caught.value.message


def error_of(response):
    """OpenAI's error object of an answer from Flask's test client."""
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


@pytest.mark.parametrize(
    ("data", "content_type", "needle"),
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b"[1, 2]", "application/json", "JSON object"),
        (b"model=general", "application/x-www-form-urlencoded", "application/json"),
        (json.dumps({"model": "x" * 70_000}).encode(), "application/json", "larger"),
    ],
)
def test_bodies_that_are_not_a_request_are_400_in_openai_shape(
    app, data, content_type, needle
):
    response = app.test_client().post(
        "/v1/chat/completions", data=data, content_type=content_type
    )
    assert response.status_code == 400
    assert needle in error_of(response)["message"]


def test_unknown_paths_and_wrong_methods_under_v1_answer_openai_shape(app):
    missing = app.test_client().get("/v1/nothing")
    assert missing.status_code == 404
    assert error_of(missing)["message"] == "Invalid URL (GET /v1/nothing)"
    wrong = app.test_client().get("/v1/chat/completions")
    assert wrong.status_code == 405
    assert error_of(wrong)["type"] == "invalid_request_error"


def test_api_keys_guard_v1_like_chat(start_server, ollama):
    server = start_server(API_KEYS=KEY)
    with client_for(server, api_key="wrong-key-0123456789") as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            client.models.list()
        assert caught.value.code == "invalid_api_key"
        assert caught.value.response.headers["WWW-Authenticate"].startswith("Bearer")
    with client_for(server, api_key=KEY) as client:
        completion = client.chat.completions.create(model="general", messages=HELLO)
        assert completion.choices[0].message.content == REPLY


def test_v1_shares_the_chat_rate_limit(start_server, ollama):
    # A configuration of its own: servers are shared by configuration, and
    # this test uses up the budget.
    server = start_server(RATE_LIMIT_CHAT="2/minute;99/day", RATE_LIMIT_DEFAULT="")
    assert requests.post(server.url + "/chat", json={"message": "hi"}, timeout=10).ok
    with client_for(server) as client:
        client.chat.completions.create(model="general", messages=HELLO)
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="general", messages=HELLO)
    assert caught.value.code == "rate_limit_exceeded"
    assert int(caught.value.response.headers["Retry-After"]) >= 1


def test_v1_waits_in_the_same_generation_queue(start_server, ollama):
    server = start_server(MAX_CONCURRENT_GENERATIONS="1", MAX_QUEUED_GENERATIONS="0")
    ollama.behaviour = Behaviour(tokens=["a"] * 10, delay=0.1)
    busy = threading.Thread(
        target=requests.post,
        args=(server.url + "/chat",),
        kwargs={"json": {"message": "long"}, "timeout": 10},
    )
    busy.start()
    deadline = time.monotonic() + 5
    while not ollama.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    with (
        client_for(server) as client,
        pytest.raises(openai.InternalServerError) as caught,
    ):
        client.chat.completions.create(model="general", messages=HELLO)
    busy.join()
    assert caught.value.status_code == 503
    assert caught.value.code == "queue_full"
