"""Scripted conversations through piagent, and what each turn cost the model.

Why scripted: the prompt cache figures compare memory policies, so every
policy must be sent the same user turns in the same order. Each turn is one
`POST /chat` streamed as server-sent events: the client stamps the first
`token` event (time to first token as a user sees it) and reads the `done`
event's `usage`, whose `prompt_tokens - cached_prompt_tokens` is what the
model had to read. Before each turn `GET /conversations/<id>` says how many
messages of history the model is about to see (the trade-off of cutting).
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass

from bench.stats import median, percentile

# Thirty user turns of a kitchen helper's day: short, varied, no plan words.
QUESTIONS = [
    "Hi! I want to cook dinner for four tonight. Any ideas?",
    "We have chicken thighs, rice, onions and a lemon.",
    "How long should the chicken thighs go in the oven?",
    "What temperature is that in Fahrenheit?",
    "Can I marinate them in the lemon juice first?",
    "How long is too long for a lemon marinade?",
    "What herbs go well with lemon chicken?",
    "We only have dried oregano. Is that fine?",
    "How much dried oregano equals a tablespoon of fresh?",
    "Now the rice: how much water for two cups?",
    "Should I rinse the rice before cooking it?",
    "Can I cook the rice in chicken stock instead?",
    "My daughter does not eat onions. How do I hide them?",
    "Is there a vegetable we could add on the side?",
    "We have frozen peas. How do I cook them well?",
    "What can I make for dessert with apples and oats?",
    "How long does an apple crumble need to bake?",
    "Can I prepare the crumble topping in the morning?",
    "What should I serve with the crumble?",
    "We have no cream. Is yogurt a good idea?",
    "How do I keep the chicken warm if guests are late?",
    "What is a quick starter I could make in ten minutes?",
    "Is garlic bread a good idea with lemon chicken?",
    "How do I make garlic butter without a garlic press?",
    "Which wine would go with this dinner?",
    "And something without alcohol for the kids?",
    "How do I store the leftover chicken?",
    "How many days does cooked rice keep in the fridge?",
    "Can I freeze the leftover crumble?",
    "Thanks! Can you sum up the plan for tonight in a few lines?",
]


@dataclass(frozen=True)
class TurnResult:
    """One turn as the client saw it, and the model server's counts."""

    conversation: str
    turn: int  # 1-based within its conversation
    ttft_s: float
    prompt_tokens: int | None
    cached_prompt_tokens: int | None
    reply_tokens: int | None
    history: int  # messages of history the model saw

    @property
    def evaluated(self) -> int | None:
        """Prompt tokens the model had to read (not found in its cache)."""
        if self.prompt_tokens is None or self.cached_prompt_tokens is None:
            return None
        return self.prompt_tokens - self.cached_prompt_tokens


def history_size(port: int, conversation: str, timeout: float) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", f"/conversations/{conversation}")
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status == 404:
        return 0
    return len(json.loads(body)["messages"])


def chat_turn(
    port: int, conversation: str, turn: int, message: str, timeout: float
) -> TurnResult:
    """One streamed turn; raises RuntimeError if it fails."""
    seen = history_size(port, conversation, timeout)
    body = json.dumps(
        {"message": message, "stream": True, "conversation_id": conversation}
    )
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        started = time.monotonic()
        connection.request(
            "POST",
            "/chat",
            body=body,
            headers={
                "Content-Type": "application/json",
                "Accept": "text/event-stream",
            },
        )
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"/chat answered {response.status}: {response.read()!r}")
        first: float | None = None
        event, usage = "", None
        while line := response.readline():
            text = line.decode().rstrip("\n")
            if text.startswith("event: "):
                event = text[7:]
                if event == "token" and first is None:
                    first = time.monotonic()
            elif text.startswith("data: ") and event == "done":
                usage = json.loads(text[6:])["usage"]
            elif text.startswith("data: ") and event == "error":
                raise RuntimeError(f"/chat stream failed: {text[6:]}")
    finally:
        connection.close()
    if usage is None or first is None:
        raise RuntimeError("/chat stream ended without a token and a done event")
    return TurnResult(
        conversation,
        turn,
        first - started,
        usage["prompt_tokens"],
        usage["cached_prompt_tokens"],
        usage["reply_tokens"],
        seen,
    )


def run_script(
    port: int, conversations: dict[str, list[str]], timeout: float = 120.0
) -> list[TurnResult]:
    """Turn 1 of every conversation, then turn 2 of every one, and so on: with
    one conversation, simply its turns in order."""
    results = []
    longest = max(map(len, conversations.values()))
    for index in range(longest):
        for name, messages in conversations.items():
            if index < len(messages):
                results.append(
                    chat_turn(port, name, index + 1, messages[index], timeout)
                )
    return results


def single(tag: str) -> dict[str, list[str]]:
    """The 30-turn conversation."""
    return {f"{tag}-solo": QUESTIONS}


def interleaved(tag: str, count: int = 3) -> dict[str, list[str]]:
    """`count` conversations of 30/count turns each, taking turns on one slot."""
    return {f"{tag}-{k}": QUESTIONS[k::count] for k in range(count)}


@dataclass(frozen=True)
class Summary:
    """One policy on one script, as the figures report it."""

    turns: int
    evaluated_mean: float
    evaluated_worst: int
    ttft_p50: float
    ttft_p95: float
    ttft_p50_first5: float
    ttft_p50_after5: float
    history_mean: float


def summarize(results: list[TurnResult]) -> Summary:
    evaluated = [r.evaluated for r in results if r.evaluated is not None]
    if len(evaluated) != len(results):
        raise RuntimeError("the model server did not report its prompt cache")
    ttfts = [r.ttft_s for r in results]
    early = [r.ttft_s for r in results if r.turn <= 5]
    late = [r.ttft_s for r in results if r.turn > 5]
    return Summary(
        turns=len(results),
        evaluated_mean=sum(evaluated) / len(evaluated),
        evaluated_worst=max(evaluated),
        ttft_p50=median(ttfts),
        ttft_p95=percentile(ttfts, 95),
        ttft_p50_first5=median(early),
        ttft_p50_after5=median(late) if late else float("nan"),
        history_mean=sum(r.history for r in results) / len(results),
    )
