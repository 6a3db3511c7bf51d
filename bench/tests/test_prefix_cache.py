"""The fakes' prompt-cache model: deterministic counts, as llama.cpp would reuse.

No timings are asserted: only what the model counts, and that the bench's fake
reports it in Ollama's fields.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from bench.http_client import one_request
from bench.prefix_cache import (
    ASSISTANT,
    PromptCache,
    common_prefix,
    prompt_tokens,
    text_tokens,
)
from bench.processes import FakeOllamaProcess, make_log_dir

SYSTEM = {"role": "system", "content": "Be brief."}


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def test_tokens_cover_every_character_in_chunks_of_four():
    text = "  Grüß dich, wonderful\tworld \n"
    tokens = text_tokens(text)
    assert "".join(tokens) == text
    assert all(len(token.strip()) <= 4 for token in tokens)
    assert text_tokens(text) == tokens


def test_a_prompt_frames_each_message_and_asks_for_the_reply():
    tokens = prompt_tokens([SYSTEM, user("hi")])
    assert tokens == ["<|system|>", "Be", " brie", "f.", "<|end|>"] + [
        "<|user|>",
        "hi",
        "<|end|>",
        ASSISTANT,
    ]


def test_the_second_turn_reads_only_what_follows_the_cached_reply():
    cache = PromptCache()
    first = prompt_tokens([SYSTEM, user("hi")])
    cost = cache.evaluate(first)
    assert (cost.total, cost.cached) == (len(first), 0)
    cache.generated(cost, first, "Hello there")
    second = prompt_tokens(
        [SYSTEM, user("hi"), {"role": "assistant", "content": "Hello there"}]
        + [user("and?")]
    )
    cost = cache.evaluate(second)
    # end of the reply, user marker, "and?", end marker, reply marker
    assert cost.evaluated == 5
    assert cost.cached == len(first) + len(text_tokens("Hello there"))


def test_a_changed_start_is_read_again_from_the_difference():
    cache = PromptCache()
    cache.evaluate(prompt_tokens([SYSTEM, user("one"), user("two")]))
    cost = cache.evaluate(prompt_tokens([SYSTEM, user("two")]))
    assert cost.cached == len(prompt_tokens([SYSTEM])) - 1 + 1


def test_the_same_prompt_again_still_reads_one_token():
    cache = PromptCache()
    prompt = prompt_tokens([SYSTEM, user("hi")])
    cache.evaluate(prompt)
    assert cache.evaluate(prompt).evaluated == 1


def test_another_conversation_on_one_slot_evicts_the_first():
    cache = PromptCache(slots=1)
    a = prompt_tokens([{"role": "system", "content": "A"}, user("x")])
    b = prompt_tokens([{"role": "system", "content": "B"}, user("x")])
    cache.evaluate(a)
    cache.evaluate(b)
    assert cache.evaluate(a).cached == 1  # the role marker, as a BOS token


def test_two_slots_keep_two_conversations_warm():
    """Prompts that share under a tenth go to the least recently used slot."""
    cache = PromptCache(slots=2)
    a = prompt_tokens([{"role": "system", "content": "A " * 20}, user("x")])
    b = prompt_tokens([{"role": "system", "content": "B " * 20}, user("x")])
    cache.evaluate(a)
    cache.evaluate(b)
    assert cache.evaluate(a).evaluated == 1
    assert cache.evaluate(b).evaluated == 1


def test_common_prefix():
    assert common_prefix(["a", "b"], ["a", "c"]) == 1
    assert common_prefix([], ["a"]) == 0


@pytest.fixture(scope="module")
def cached_fake() -> Iterator[FakeOllamaProcess]:
    process = FakeOllamaProcess(
        make_log_dir(),
        "bench-model",
        ("--prompt-ms-per-token", "0", "--reply-tokens", "3"),
        name="fake_ollama_cache",
    )
    process.start()
    yield process
    process.stop()


def final_line(port: int, messages: list[dict[str, str]]) -> dict:
    body = json.dumps({"model": "bench-model", "messages": messages, "stream": True})
    response = asyncio.run(
        one_request("127.0.0.1", port, "POST", "/api/chat", body.encode())
    )
    assert response.status == 200
    lines = [json.loads(line) for line in response.body.split(b"\n") if b"{" in line]
    return lines[-1]


def test_bench_fake_reports_the_cache_in_ollamas_fields(cached_fake):
    first = [SYSTEM, user("hello")]
    done = final_line(cached_fake.port, first)
    assert done["eval_count"] == 3
    assert done["prompt_eval_count"] == len(prompt_tokens(first))
    assert done["prompt_eval_cached_count"] == 0
    second = [*first, {"role": "assistant", "content": "tok " * 3}, user("more")]
    done = final_line(cached_fake.port, second)
    assert done["prompt_eval_count"] == len(prompt_tokens(second))
    expected = len(prompt_tokens(first)) + len(text_tokens("tok " * 3))
    assert done["prompt_eval_cached_count"] == expected
