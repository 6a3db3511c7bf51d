"""Prompt-cache counts read from each model server's final line (no socket)."""

import pytest
import responses

from piagent.providers.counts import count, openai_usage
from tests.test_ollama_provider import CHAT as OLLAMA_CHAT
from tests.test_ollama_provider import DONE, ndjson, token
from tests.test_ollama_provider import provider as ollama_provider
from tests.test_openai_provider import CHAT as OPENAI_CHAT
from tests.test_openai_provider import MESSAGES, MODEL, delta, sse
from tests.test_openai_provider import provider as openai_provider


@responses.activate
@pytest.mark.parametrize(
    ("extra", "cached"),
    [
        ({"prompt_eval_cached_count": 9}, 9),
        ({"prompt_eval_cached_count": 0}, 0),
        ({}, None),  # Ollama before 0.30, or one that does not say
        ({"prompt_eval_cached_count": "9"}, None),
        ({"prompt_eval_cached_count": True}, None),
        ({"prompt_eval_cached_count": -1}, None),
    ],
)
def test_ollama_cached_count_is_read_when_it_is_a_count(extra, cached):
    responses.post(OLLAMA_CHAT, body=ndjson(token("a"), {**DONE, **extra}))
    usage = ollama_provider().complete("m:1b", MESSAGES).usage
    assert (usage.prompt_tokens, usage.cached_prompt_tokens) == (12, cached)


def usage_chunk(usage=None, timings=None) -> dict:
    chunk: dict = {"choices": []}
    if usage is not None:
        chunk["usage"] = usage
    if timings is not None:
        chunk["timings"] = timings
    return chunk


LLAMA_USAGE = {
    "prompt_tokens": 120,
    "completion_tokens": 3,
    "prompt_tokens_details": {"cached_tokens": 100},
}


@responses.activate
def test_llama_server_usage_and_timings_agree():
    """As llama-server sends them: usage, then timings on the same last chunk."""
    timings = {"cache_n": 100, "prompt_n": 20, "predicted_n": 3}
    body = sse(delta("a"), delta("", "stop"), usage_chunk(LLAMA_USAGE, timings))
    responses.post(OPENAI_CHAT, body=body + sse("[DONE]"))
    usage = openai_provider().complete(MODEL, MESSAGES).usage
    assert (usage.prompt_tokens, usage.cached_prompt_tokens) == (120, 100)
    assert usage.reply_tokens == 3


@responses.activate
def test_timings_alone_give_the_whole_prompt_and_the_cached_part():
    """llama-server not asked for usage puts timings on its finish chunk."""
    finish = {**delta("", "stop"), "timings": {"cache_n": 30, "prompt_n": 7}}
    responses.post(OPENAI_CHAT, body=sse(delta("a"), finish, "[DONE]"))
    usage = openai_provider().complete(MODEL, MESSAGES).usage
    assert (usage.prompt_tokens, usage.cached_prompt_tokens) == (37, 30)
    assert usage.reply_tokens is None


@responses.activate
def test_openai_usage_without_details_leaves_the_cache_unknown():
    plain = {"prompt_tokens": 12, "completion_tokens": 3}
    responses.post(OPENAI_CHAT, body=sse(delta("a"), usage_chunk(plain), "[DONE]"))
    usage = openai_provider().complete(MODEL, MESSAGES).usage
    assert (usage.prompt_tokens, usage.cached_prompt_tokens) == (12, None)


@pytest.mark.parametrize(
    ("usage", "timings", "expected"),
    [
        (LLAMA_USAGE, None, (120, 100)),
        ({"prompt_tokens": 50}, {"cache_n": 40, "prompt_n": 10}, (50, 40)),
        # The OpenAI-style usage wins where both speak.
        (LLAMA_USAGE, {"cache_n": 1, "prompt_n": 1}, (120, 100)),
        ({"prompt_tokens_details": None}, {"cache_n": 5}, (None, 5)),
        ({"prompt_tokens_details": {"cached_tokens": None}}, None, (None, None)),
        ("not an object", ["nor", "this"], (None, None)),
        (None, {"cache_n": "5", "prompt_n": 2}, (None, None)),
    ],
)
def test_openai_usage_combines_leniently(usage, timings, expected):
    read = openai_usage(usage, timings, 3, "stop")
    assert (read.prompt_tokens, read.cached_prompt_tokens) == expected
    assert (read.reply_tokens, read.done_reason) == (3, "stop")


def test_count_takes_only_non_negative_integers():
    assert [count(v) for v in (0, 7, -1, 1.0, "2", True, None)] == [
        0,
        7,
        None,
        None,
        None,
        None,
        None,
    ]
