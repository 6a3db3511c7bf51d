"""The OpenAI-compatible provider's request shape, SSE parsing and error mapping."""

import json

import pytest
import requests
import responses

from piagent.errors import (
    ModelMissing,
    ProviderBusy,
    ProviderFailed,
    ProviderTimeout,
    ProviderUnreachable,
    StreamBroken,
)
from piagent.providers import Options
from piagent.providers.openai import OpenAIProvider

BASE = "http://llama.test:8080/v1"
CHAT = BASE + "/chat/completions"
MODEL = "m-1b"
MESSAGES = [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]


def provider(**overrides) -> OpenAIProvider:
    kwargs = dict(
        api_key="", timeout=5.0, connect_timeout=1.0, temperature=0.7, max_tokens=200
    )
    kwargs.update(overrides)
    return OpenAIProvider(BASE, **kwargs)


def sse(*items) -> str:
    return "".join(
        f"data: {item if isinstance(item, str) else json.dumps(item)}\n\n"
        for item in items
    )


def delta(text, finish=None) -> dict:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    }


USAGE = {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3}}


@responses.activate
def test_request_carries_messages_sampling_and_asks_for_usage():
    responses.post(CHAT, body=sse(delta("a"), "[DONE]"))
    provider().complete(MODEL, MESSAGES)
    sent = json.loads(responses.calls[0].request.body)
    assert sent == {
        "model": MODEL,
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.7,
        "max_tokens": 200,
    }
    assert "Authorization" not in responses.calls[0].request.headers


@responses.activate
def test_api_key_is_sent_as_bearer_and_options_override_the_defaults():
    responses.post(CHAT, body=sse(delta("a"), "[DONE]"))
    provider(api_key="sk-local").complete(
        MODEL, MESSAGES, Options(temperature=0.0, max_tokens=5)
    )
    request = responses.calls[0].request
    assert request.headers["Authorization"] == "Bearer sk-local"
    sent = json.loads(request.body)
    assert (sent["temperature"], sent["max_tokens"]) == (0.0, 5)


@responses.activate
def test_deltas_join_byte_exact_and_usage_and_finish_reason_are_read():
    role = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]}
    body = (
        ": keep-alive comment\n\n"
        + sse(role, delta("Grüß"), delta(" 🙂"), delta("\n"), delta("", "length"))
        + sse(USAGE, "[DONE]")
    )
    responses.post(CHAT, body=body)
    reply = provider().complete(MODEL, MESSAGES)
    assert reply.text == "Grüß 🙂\n"
    assert (reply.usage.prompt_tokens, reply.usage.reply_tokens) == (12, 3)
    assert reply.usage.done_reason == "length"


@responses.activate
def test_crlf_lines_event_fields_and_comments_are_understood():
    body = (
        "event: message\r\nid: 1\r\n"
        + sse(delta("a")).replace("\n", "\r\n")
        + ": ping\r\n\r\n"
        + sse("[DONE]")
    )
    responses.post(CHAT, body=body)
    assert provider().complete(MODEL, MESSAGES).text == "a"


@responses.activate
def test_a_server_without_usage_leaves_the_counts_unknown():
    responses.post(CHAT, body=sse(delta("a"), delta("", "stop"), "[DONE]"))
    usage = provider().complete(MODEL, MESSAGES).usage
    assert (usage.prompt_tokens, usage.reply_tokens, usage.done_reason) == (
        None,
        None,
        "stop",
    )


@responses.activate
def test_empty_reply_is_not_an_error():
    responses.post(CHAT, body=sse(delta("", "stop"), "[DONE]"))
    assert provider().complete(MODEL, MESSAGES).text == ""


@pytest.mark.parametrize(
    "error",
    [
        {"error": {"message": f"The model `{MODEL}` does not exist", "code": None}},
        {"error": "model not found"},
    ],
)
@responses.activate
def test_unknown_model_is_model_missing_naming_it(error):
    responses.post(CHAT, status=404, json=error)
    with pytest.raises(ModelMissing) as caught:
        provider().stream(MODEL, MESSAGES)
    assert repr(MODEL) in caught.value.detail and "/v1" in caught.value.detail
    assert caught.value.status == 502


@responses.activate
def test_model_not_found_code_on_a_400_is_model_missing_too():
    error = {"error": {"message": "no such model", "code": "model_not_found"}}
    responses.post(CHAT, status=400, json=error)
    with pytest.raises(ModelMissing, match="no such model"):
        provider().stream(MODEL, MESSAGES)


@pytest.mark.parametrize(
    ("status", "error", "status_out", "needle"),
    [
        (500, ProviderFailed, 502, "it broke"),
        (400, ProviderFailed, 502, "it broke"),
        (401, ProviderFailed, 502, "OPENAI_API_KEY"),
        (403, ProviderFailed, 502, "OPENAI_API_KEY"),
        (429, ProviderBusy, 503, "it broke"),
        (503, ProviderBusy, 503, "it broke"),
    ],
)
@responses.activate
def test_error_statuses_carry_the_servers_message(status, error, status_out, needle):
    responses.post(CHAT, status=status, json={"error": {"message": "it broke"}})
    with pytest.raises(error) as caught:
        provider().stream(MODEL, MESSAGES)
    assert needle in caught.value.detail
    assert caught.value.status == status_out


@responses.activate
def test_error_status_with_a_non_json_body_still_maps():
    responses.post(CHAT, status=500, body="<html>oops</html>")
    with pytest.raises(ProviderFailed, match="oops"):
        provider().stream(MODEL, MESSAGES)


@pytest.mark.parametrize(
    ("exc", "error", "needle"),
    [
        (requests.ConnectTimeout(), ProviderUnreachable, BASE),
        (requests.ConnectionError("Connection refused"), ProviderUnreachable, BASE),
        (requests.ReadTimeout(), ProviderTimeout, "OLLAMA_TIMEOUT"),
    ],
)
@responses.activate
def test_connection_failures_map_before_any_text(exc, error, needle):
    responses.post(CHAT, body=exc)
    with pytest.raises(error) as caught:
        provider().stream(MODEL, MESSAGES)
    assert needle in caught.value.detail


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (sse({"error": {"message": "model crashed"}}), "error: model crashed"),
        (sse({"error": "plain words"}), "error: plain words"),
        ("data: {not json\n\n", "malformed line"),
        (sse([1, 2]), "malformed line"),
        (sse({"choices": [{"delta": {"content": 5}}]}), "malformed line"),
        (sse({"choices": [{"delta": "text"}]}), "malformed line"),
        (sse({"no": "choices"}), "malformed line"),
        ('{"object": "chat.completion"}\n', "malformed line"),
        ("", "without `data: [DONE]`"),
    ],
    ids=[
        "error",
        "error-string",
        "bad-json",
        "not-object",
        "bad-content",
        "delta-not-object",
        "no-choices",
        "raw",
        "empty",
    ],
)
@responses.activate
def test_bad_first_event_is_a_failure_before_any_text(body, said):
    responses.post(CHAT, body=body)
    with pytest.raises(ProviderFailed) as caught:
        provider().stream(MODEL, MESSAGES)
    assert said in caught.value.detail


@pytest.mark.parametrize(
    ("tail", "said"),
    [
        (sse({"error": {"message": "boom"}}), "error: boom"),
        ("data: {broken\n\n", "malformed line"),
        ("", "without `data: [DONE]`"),
    ],
    ids=["error-event", "malformed-event", "no-done"],
)
@responses.activate
def test_failure_after_first_token_breaks_the_stream(tail, said):
    responses.post(CHAT, body=sse(delta("a"), delta("b")) + tail)
    stream = provider().stream(MODEL, MESSAGES)
    got = []
    with pytest.raises(StreamBroken) as caught:
        for piece in stream:
            got.append(piece)
    assert got == ["a", "b"]
    assert said in caught.value.detail


@responses.activate
def test_complete_fails_whole_when_the_stream_breaks():
    responses.post(CHAT, body=sse(delta("a"), {"error": {"message": "boom"}}))
    with pytest.raises(StreamBroken, match="boom"):
        provider().complete(MODEL, MESSAGES)


@responses.activate
def test_readiness_and_probe_compare_models_with_the_servers_list():
    listed = {"object": "list", "data": [{"id": "have"}, {"id": "also"}]}
    responses.get(BASE + "/models", json=listed)
    ready = provider().readiness(["have"])
    assert ready.ready and ready.models["have"].pulled
    not_ready = provider().readiness(["have", "want"])
    assert "'want' is not listed" in not_ready.problem
    assert "also, have" in not_ready.problem
    assert provider().probe(["have", "want"]) == [not_ready.problem]


@responses.activate
def test_readiness_reports_an_unreachable_server_without_raising():
    responses.get(BASE + "/models", body=requests.ConnectionError("refused"))
    ready = provider().readiness(["m"])
    assert not ready.ready
    assert f"OpenAI-compatible server unreachable at {BASE}" in ready.problem
    [warning] = provider().probe(["m"])
    assert warning == f"{ready.problem} /chat answers 502 until this is fixed."


@responses.activate
def test_warm_asks_for_a_single_token():
    responses.post(CHAT, body=sse(delta("a"), "[DONE]"))
    provider().warm(MODEL)
    assert json.loads(responses.calls[0].request.body)["max_tokens"] == 1


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ({"status": 500, "json": {"error": {"message": "down"}}}, "HTTP 500: down"),
        ({"json": {"data": "not a list"}}, "unexpected model list"),
        ({"body": "not json"}, "unexpected model list"),
    ],
    ids=["error-status", "bad-shape", "not-json"],
)
@responses.activate
def test_a_model_list_the_server_cannot_give_is_a_readiness_problem(answer, said):
    responses.get(BASE + "/models", **answer)
    ready = provider().readiness(["m"])
    assert not ready.ready and said in ready.problem
