"""The model servers' token counts, prompt-cache use included, read leniently.

What each server says at the end of a reply:

- Ollama: `prompt_eval_count`, the whole prompt (since 0.30, which runs
  llama.cpp's server, cached tokens included), and `prompt_eval_cached_count`
  on versions that report the cache.
- OpenAI and servers that copy it: `usage.prompt_tokens`, the whole prompt,
  and `usage.prompt_tokens_details.cached_tokens`, the part read from cache.
- llama.cpp's llama-server: the same `usage`, plus `timings` on the last chunk
  with `cache_n` (tokens reused) and `prompt_n` (tokens it had to read).

A count that is missing or not an integer is None ("unknown"), never a guess.
"""

from __future__ import annotations

from typing import Any

from piagent.providers.base import Usage


def count(value: Any) -> int | None:
    """A token count, or None for anything that is not a non-negative integer."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def member(container: Any, name: str) -> Any:
    """container[name] when container is a JSON object, else None."""
    return container.get(name) if isinstance(container, dict) else None


def openai_usage(
    usage: Any, timings: Any, reply_tokens: int | None, done_reason: str | None
) -> Usage:
    """Usage from an OpenAI-style `usage` object and llama-server's `timings`.

    `usage` wins where both say something; `timings` fills the gaps (a
    llama-server asked without `stream_options` sends only timings).
    """
    prompt = count(member(usage, "prompt_tokens"))
    cached = count(member(member(usage, "prompt_tokens_details"), "cached_tokens"))
    cache_n = count(member(timings, "cache_n"))
    prompt_n = count(member(timings, "prompt_n"))
    if prompt is None and cache_n is not None and prompt_n is not None:
        prompt = cache_n + prompt_n
    if cached is None:
        cached = cache_n
    return Usage(prompt, reply_tokens, done_reason, cached)
