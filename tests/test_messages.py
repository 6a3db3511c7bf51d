"""Building the model's message list: system prompt, history cut in blocks, message."""

from piagent.chat import build_messages, estimate_tokens, history_start
from piagent.memory import Message


def history(n: int, size: int = 30) -> list[Message]:
    out = []
    for i in range(n):
        out.append(Message("user", f"q{i}".ljust(size, ".")))
        out.append(Message("assistant", f"a{i}".ljust(size, ".")))
    return out


def budget_for(messages: int, size: int = 30) -> int:
    """Room for system prompt, message and `messages` history messages."""
    one = estimate_tokens("x" * size)
    return estimate_tokens("sys") + estimate_tokens("now") + messages * one


def test_roles_in_order_system_history_message_as_given():
    messages = build_messages("sys", history(1), "now")
    assert messages == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "q0".ljust(30, ".")},
        {"role": "assistant", "content": "a0".ljust(30, ".")},
        {"role": "user", "content": "now"},
    ]


def test_history_that_fits_is_sent_whole():
    past = history(4)
    assert history_start("sys", past, "now", budget_for(8), 8, 2) == 0


def test_over_the_budget_history_is_cut_down_to_trim_to_in_one_block():
    """Room for 6 of the 10 messages, yet the cut keeps 2: the next turns then
    grow append-only again instead of cutting one exchange every turn."""
    past = history(5)
    start = history_start("sys", past, "now", budget_for(6), 20, 2)
    assert past[start:] == past[-2:]


def test_cut_goes_further_when_trim_to_messages_still_do_not_fit():
    past = history(5)
    start = history_start("sys", past, "now", budget_for(3), 20, 8)
    assert past[start:] == past[-2:]


def test_cut_window_never_opens_with_an_assistant_message():
    past = history(5)
    for trim_to in range(6):
        start = history_start("sys", past, "now", budget_for(3), 20, trim_to)
        assert start == len(past) or past[start].role == "user"
        assert len(past) - start <= trim_to


def test_no_history_when_message_alone_exceeds_budget():
    past = history(3)
    assert history_start("sys", past, "x" * 9000, 100, 8, 2) == len(past)


def test_history_longer_than_max_turns_is_cut_to_trim_to():
    """A store written with a larger MEMORY_MAX_TURNS than today's."""
    past = history(6)
    start = history_start("sys", past, "now", 100_000, 8, 4)
    assert past[start:] == past[-4:]


def test_estimate_errs_high_for_non_ascii_text():
    assert estimate_tokens("héllo wörld") > estimate_tokens("hello world")
    assert estimate_tokens("a" * 400) >= 400 // 4
