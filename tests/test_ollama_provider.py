"""The Ollama provider's request shape, NDJSON parsing and error mapping (no socket)."""

import json

import pytest
import requests
import responses
from hypothesis import given
from hypothesis import strategies as st

from piagent.errors import (
    ModelMissing,
    ProviderBusy,
    ProviderFailed,
    ProviderTimeout,
    ProviderUnreachable,
    StreamBroken,
)
from piagent.providers import Options
from piagent.providers.chunked import line_batches
from piagent.providers.ollama import OllamaProvider, keep_alive_value, token_content

HOST = "http://ollama.test:11434"
CHAT = HOST + "/api/chat"
MODEL = "m:1b"
MESSAGES = [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]


def provider(**overrides) -> OllamaProvider:
    options = {"temperature": 0.7, "num_ctx": 2048, "num_predict": 200}
    kwargs = dict(timeout=5.0, connect_timeout=1.0, keep_alive="5m", options=options)
    kwargs.update(overrides)
    return OllamaProvider(HOST, **kwargs)


def ndjson(*items) -> str:
    return "".join(json.dumps(item) + "\n" for item in items)


def token(text: str) -> dict:
    return {"model": MODEL, "message": {"role": "assistant", "content": text}}


DONE = {
    "model": MODEL,
    "message": {"role": "assistant", "content": ""},
    "done": True,
    "done_reason": "stop",
    "prompt_eval_count": 12,
    "eval_count": 3,
}


@responses.activate
def test_request_carries_role_messages_options_and_keep_alive():
    responses.post(CHAT, body=ndjson(token("a"), DONE))
    provider().complete(MODEL, MESSAGES)
    sent = json.loads(responses.calls[0].request.body)
    assert sent == {
        "model": MODEL,
        "messages": MESSAGES,
        "stream": True,
        "options": {"temperature": 0.7, "num_ctx": 2048, "num_predict": 200},
        "keep_alive": "5m",
    }


def test_keep_alive_numbers_are_sent_as_seconds():
    assert keep_alive_value("-1") == -1 and keep_alive_value("300") == 300
    assert keep_alive_value("1h30m") == "1h30m"


@responses.activate
def test_complete_joins_tokens_byte_exact_and_reads_usage():
    responses.post(CHAT, body=ndjson(token("Grüß"), token(" 🙂"), token("\n"), DONE))
    reply = provider().complete(MODEL, MESSAGES)
    assert reply.text == "Grüß 🙂\n"
    assert (reply.usage.prompt_tokens, reply.usage.reply_tokens) == (12, 3)
    assert reply.usage.done_reason == "stop"


@pytest.mark.parametrize("size", [1, 2, 7, 50, 10_000])
def test_lines_split_anywhere_are_reassembled(size):
    body = ndjson(token("a"), token("b"), DONE).encode()
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    lines = [line for batch in line_batches(iter(chunks)) for line in batch]
    assert [json.loads(line) for line in lines] == [token("a"), token("b"), DONE]


@responses.activate
def test_empty_reply_is_not_an_error():
    responses.post(CHAT, body=ndjson(DONE))
    assert provider().complete(MODEL, MESSAGES).text == ""


@responses.activate
def test_model_missing_names_the_model_and_the_pull_command():
    responses.post(
        CHAT, status=404, json={"error": f'model "{MODEL}" not found, try pulling it'}
    )
    with pytest.raises(ModelMissing) as caught:
        provider().stream(MODEL, MESSAGES)
    assert f"ollama pull {MODEL}" in caught.value.detail
    assert caught.value.status == 502


@pytest.mark.parametrize(
    ("status", "error", "status_out"),
    [(500, ProviderFailed, 502), (400, ProviderFailed, 502), (503, ProviderBusy, 503)],
)
@responses.activate
def test_error_statuses_carry_ollamas_message(status, error, status_out):
    responses.post(CHAT, status=status, json={"error": "it broke"})
    with pytest.raises(error) as caught:
        provider().stream(MODEL, MESSAGES)
    assert "it broke" in caught.value.detail
    assert caught.value.status == status_out


@responses.activate
def test_error_status_with_a_non_json_body_still_maps():
    responses.post(CHAT, status=500, body="<html>oops</html>")
    with pytest.raises(ProviderFailed, match="oops"):
        provider().stream(MODEL, MESSAGES)


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (requests.ConnectTimeout(), ProviderUnreachable),
        (requests.ConnectionError("Connection refused"), ProviderUnreachable),
        (requests.ReadTimeout(), ProviderTimeout),
    ],
)
@responses.activate
def test_connection_failures_map_before_any_text(exc, error):
    responses.post(CHAT, body=exc)
    with pytest.raises(error) as caught:
        provider().stream(MODEL, MESSAGES)
    assert HOST in caught.value.detail or "OLLAMA_TIMEOUT" in caught.value.detail


@responses.activate
def test_unreachable_message_names_the_host():
    responses.post(CHAT, body=requests.ConnectionError("Connection refused"))
    with pytest.raises(ProviderUnreachable, match=f"Ollama unreachable at {HOST}"):
        provider().stream(MODEL, MESSAGES)


@pytest.mark.parametrize(
    "body",
    [
        ndjson({"error": "model crashed"}),
        "{not json\n",
        ndjson([1, 2]),
        ndjson({"message": {"content": 5}}),
    ],
)
@responses.activate
def test_bad_first_line_is_a_failure_before_any_text(body):
    responses.post(CHAT, body=body)
    with pytest.raises(ProviderFailed):
        provider().stream(MODEL, MESSAGES)


@pytest.mark.parametrize(
    "tail",
    [ndjson({"error": "boom"}), "{broken\n", ""],
    ids=["error-line", "malformed-line", "no-done-line"],
)
@responses.activate
def test_failure_after_first_token_breaks_the_stream(tail):
    responses.post(CHAT, body=ndjson(token("a"), token("b")) + tail)
    stream = provider().stream(MODEL, MESSAGES)
    got = []
    with pytest.raises(StreamBroken):
        for piece in stream:
            got.append(piece)
    assert got == ["a", "b"]


@responses.activate
def test_complete_fails_whole_when_the_stream_breaks():
    responses.post(CHAT, body=ndjson(token("a"), {"error": "boom"}))
    with pytest.raises(StreamBroken, match="boom"):
        provider().complete(MODEL, MESSAGES)


@responses.activate
def test_probe_reports_missing_models_with_pull_command():
    responses.get(HOST + "/api/tags", json={"models": [{"name": "have:1b"}]})
    problems = provider().probe(["have:1b", "want:3b"])
    assert problems == [
        f"model 'want:3b' is not pulled in Ollama at {HOST}: run `ollama pull want:3b`"
    ]


@responses.activate
def test_probe_reports_an_unreachable_host():
    responses.get(HOST + "/api/tags", body=requests.ConnectionError("refused"))
    [problem] = provider().probe(["m"])
    assert f"Ollama unreachable at {HOST}" in problem


def ollama_line(content: str, ascii_only: bool = False, **extra) -> str:
    item = {
        "model": MODEL,
        "created_at": "2026-12-02T07:50:01.123456789Z",
        "message": {"role": "assistant", "content": content},
        "done": False,
        **extra,
    }
    return json.dumps(item, separators=(",", ":"), ensure_ascii=ascii_only)


@given(content=st.text(), ascii_only=st.booleans())
def test_token_lines_of_ollamas_shape_read_as_a_full_decode_would(content, ascii_only):
    line = ollama_line(content, ascii_only)
    assert token_content(line) == json.loads(line)["message"]["content"] == content
    assert token_content(line + "\n") == content


@pytest.mark.parametrize(
    "line",
    [
        ollama_line("a", thinking="hm"),
        ollama_line("a").replace('"done":false', '"done":true'),
        ollama_line("a").replace('"role":"assistant",', ""),
        ollama_line("a") + "x",
        ollama_line("a") + "\x0b",
        ollama_line("a").replace('"a"', '"\\x"'),
        ollama_line("a").replace('"a"', '"a\tb"'),
        ollama_line("a").replace(MODEL, "m\x01"),
        '{"error":"boom"}',
    ],
    ids=[
        "thinking",
        "done",
        "no-role",
        "trailing",
        "vertical-tab",
        "bad-escape",
        "raw-tab",
        "control-in-model",
        "error",
    ],
)
def test_any_other_line_is_left_to_a_full_decode(line):
    assert token_content(line) is None


@responses.activate
def test_a_raw_control_character_in_content_is_still_a_malformed_line():
    bad = ollama_line("a").replace('"a"', '"a\tb"')
    responses.post(CHAT, body=bad + "\n" + ndjson(DONE))
    with pytest.raises(ProviderFailed, match="malformed"):
        provider().stream(MODEL, MESSAGES)


@responses.activate
def test_a_clients_options_reach_ollama_where_it_takes_them():
    responses.post(CHAT, body=ndjson(token("a"), DONE))
    options = Options(
        temperature=0.1,
        max_tokens=50,
        format={"type": "object"},
        think="low",
        num_ctx=4096,
        keep_alive=-1,
        top_p=0.9,
        top_k=20,
        seed=7,
        stop=("\n\n",),
    )
    provider().complete(MODEL, MESSAGES, options)
    sent = json.loads(responses.calls[0].request.body)
    assert sent["options"] == {
        "temperature": 0.1,
        "num_ctx": 4096,
        "num_predict": 50,
        "top_p": 0.9,
        "top_k": 20,
        "seed": 7,
        "stop": ["\n\n"],
    }
    assert sent["format"] == {"type": "object"} and sent["think"] == "low"
    assert sent["keep_alive"] == -1


@responses.activate
def test_thinking_is_handed_out_only_when_asked_for_and_durations_are_kept():
    thought = {"model": MODEL, "message": {"role": "assistant", "content": ""}}
    thought["message"]["thinking"] = "hmm"
    both = {"model": MODEL, "message": {"role": "assistant", "content": "A"}}
    both["message"]["thinking"] = "so"
    timed = {**DONE, "total_duration": 9, "load_duration": 1}
    timed.update(prompt_eval_duration=2, eval_duration=5)
    body = ndjson(thought, both, token("B"), timed)
    responses.post(CHAT, body=body)
    responses.post(CHAT, body=body)
    plain = provider().complete(MODEL, MESSAGES)
    assert (plain.text, plain.thinking) == ("AB", "")
    thinking = provider().complete(MODEL, MESSAGES, Options(stream_thinking=True))
    assert (thinking.text, thinking.thinking) == ("AB", "hmmso")
    assert thinking.usage.durations == (9, 1, 2, 5)
