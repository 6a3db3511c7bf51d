"""Building the model's message list: system prompt, trimmed history, message."""

from piagent.chat import build_messages, estimate_tokens
from piagent.memory import Message


def history(n: int, size: int = 30) -> list[Message]:
    out = []
    for i in range(n):
        out.append(Message("user", f"q{i}".ljust(size, ".")))
        out.append(Message("assistant", f"a{i}".ljust(size, ".")))
    return out


def test_roles_in_order_system_history_message():
    messages = build_messages("sys", history(1), "now", budget_tokens=1000)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == "sys" and messages[-1]["content"] == "now"


def test_history_is_trimmed_oldest_first_to_fit_the_budget():
    past = history(10)
    budget = (
        estimate_tokens("sys")
        + estimate_tokens("now")
        + 4 * estimate_tokens(past[0].content)
    )
    messages = build_messages("sys", past, "now", budget_tokens=budget)
    kept = [m["content"] for m in messages[1:-1]]
    assert kept == [m.content for m in past[-4:]]


def test_trimmed_window_does_not_open_with_an_assistant_message():
    past = history(10)
    budget = (
        estimate_tokens("sys")
        + estimate_tokens("now")
        + 3 * estimate_tokens(past[0].content)
    )
    messages = build_messages("sys", past, "now", budget_tokens=budget)
    assert [m["role"] for m in messages[1:-1]] == ["user", "assistant"]


def test_no_history_when_message_alone_exceeds_budget():
    messages = build_messages("sys", history(3), "x" * 9000, budget_tokens=100)
    assert [m["role"] for m in messages] == ["system", "user"]


def test_estimate_errs_high_for_non_ascii_text():
    assert estimate_tokens("héllo wörld") > estimate_tokens("hello world")
    assert estimate_tokens("a" * 400) >= 400 // 4
