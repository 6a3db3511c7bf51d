"""A deterministic prompt-cache cost model for the fake model servers.

What it imitates: llama.cpp's server (which Ollama runs since 0.30) keeps, per
slot, the tokens of the last prompt and of the reply it generated, and for the
next request re-reads only the tokens after the first one that differs; the
time to the first token grows with that count. A chat client that keeps the
start of its prompt identical from turn to turn pays for its new message only.

The model, so that a benchmark or a test can count without a real tokenizer:

- A prompt is tokenized as a chat template would frame it: per message a role
  marker, the content cut into tokens (a run of whitespace with up to 4
  following non-space characters, or trailing whitespace), and an end marker;
  then the assistant marker that asks for the reply.
- A slot holds the last prompt's tokens followed by its reply's tokens (without
  the end marker, which the next prompt adds, as a model's stop token would).
- A request takes the slot sharing the largest part of its prompt, if over
  10% (llama-server's default slot-prompt similarity), else the least recently
  used slot, and is charged for the tokens after the shared prefix; at least
  one token is always evaluated, as a real model must read one to produce the
  next. (llama-server can also keep old prompts in RAM, `--cache-ram`; this
  model, like Ollama, does not.)

Deterministic: the same prompts in the same order always give the same counts.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_TOKEN = re.compile(r"\s*\S{1,4}|\s+")
ASSISTANT = "<|assistant|>"
# llama-server's --slot-prompt-similarity default: below it, a slot's cache is
# not worth keeping and the least recently used slot is taken instead.
SIMILARITY = 0.1
END = "<|end|>"


def text_tokens(text: str) -> list[str]:
    """Content cut into tokens of about 4 characters, whitespace kept."""
    return _TOKEN.findall(text)


def spoken(message: Mapping[str, object]) -> str:
    """What the model reads of a message: its content, then its tool calls
    (as a template renders them: here their JSON, keys sorted)."""
    text = str(message.get("content") or "")
    calls = message.get("tool_calls")
    if calls:
        text += json.dumps(calls, sort_keys=True, separators=(",", ":"))
    return text


def prompt_tokens(messages: Iterable[Mapping[str, object]]) -> list[str]:
    """A chat prompt as the model would read it, ending with the reply marker."""
    tokens: list[str] = []
    for message in messages:
        tokens.append(f"<|{message.get('role')}|>")
        tokens.extend(text_tokens(spoken(message)))
        tokens.append(END)
    tokens.append(ASSISTANT)
    return tokens


@dataclass(frozen=True)
class Evaluation:
    """What one request cost: its slot, the prompt's size and the reused part."""

    slot: int
    total: int
    cached: int

    @property
    def evaluated(self) -> int:
        return self.total - self.cached


def common_prefix(a: list[str], b: list[str]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PromptCache:
    """The slots of one model server; safe to share between threads."""

    def __init__(self, slots: int = 1) -> None:
        self._slots: list[list[str]] = [[] for _ in range(max(1, slots))]
        self._last_used = [0] * len(self._slots)
        self._clock = 0
        self._lock = threading.Lock()

    def evaluate(self, prompt: list[str]) -> Evaluation:
        """Charge a prompt to the slot that shares most of it, which then holds it."""
        with self._lock:
            self._clock += 1
            shared = [common_prefix(tokens, prompt) for tokens in self._slots]
            slot = self._choose(shared, len(prompt))
            cached = min(shared[slot], max(len(prompt) - 1, 0))
            self._slots[slot] = list(prompt)
            self._last_used[slot] = self._clock
            return Evaluation(slot, len(prompt), cached)

    def _choose(self, shared: list[int], size: int) -> int:
        """As llama-server picks: the slot sharing the largest part of the
        prompt if that is over SIMILARITY, else the least recently used."""
        best, best_share = None, SIMILARITY
        for index, tokens in enumerate(self._slots):
            share = shared[index] / size if tokens and size else 0.0
            if share > best_share:
                best, best_share = index, share
        if best is not None:
            return best
        return min(range(len(self._slots)), key=lambda i: self._last_used[i])

    def generated(self, evaluation: Evaluation, prompt: list[str], reply: str) -> None:
        """The slot now also holds the reply (the part of it that was produced)."""
        with self._lock:
            if self._slots[evaluation.slot] == prompt:
                self._slots[evaluation.slot] = prompt + text_tokens(reply)
