"""The chat service frees its generation slot on every path, without a server."""

import pytest

from piagent.agents import Agent
from piagent.chat import ChatService
from piagent.errors import ProviderFailed, QueueFull, StreamBroken
from piagent.events import Done, Tokens
from piagent.generation_queue import GenerationQueue
from piagent.memory import LocalMemoryStore
from piagent.providers import Reply, Usage
from piagent.settings import Settings

AGENT = Agent("general", "be brief", "m")


class FakeStream:
    def __init__(self, tokens, fail_after=None):
        self.model, self.usage = "m", None
        self._tokens, self._fail_after = tokens, fail_after
        self.closed = False

    def __iter__(self):
        for index, token in enumerate(self._tokens):
            if index == self._fail_after:
                raise StreamBroken("boom")
            yield token

    def batches(self):
        return ([token] for token in self)

    def close(self):
        self.closed = True


class FakeProvider:
    name = "fake"

    def __init__(self, fail_before=False, fail_after=None):
        self.fail_before, self.fail_after = fail_before, fail_after
        self.streams = []

    def stream(self, model, messages, options=None):
        if self.fail_before:
            raise ProviderFailed("down")
        stream = FakeStream(["a", "b", "c"], self.fail_after)
        self.streams.append(stream)
        return stream

    def complete(self, model, messages, options=None):
        if self.fail_before:
            raise ProviderFailed("down")
        return Reply("abc", model, Usage())

    def probe(self, models):
        return []


def texts(events):
    """The tokens of an event stream, checking that it ends with Done."""
    events = list(events)
    assert isinstance(events[-1], Done)
    return [
        text for event in events if isinstance(event, Tokens) for text in event.texts
    ]


def service(provider):
    queue = GenerationQueue(1, 0, 60.0)
    memory = LocalMemoryStore(8, 3600, 10)
    chat = ChatService(Settings(), {"general": AGENT}, provider, memory, queue)
    return chat, queue, memory


def test_json_reply_frees_the_slot_on_success_and_failure():
    chat, queue, _ = service(FakeProvider())
    assert chat.reply(chat.start("hi", "general", None)).text == "abc"
    assert queue.active == 0
    chat, queue, memory = service(FakeProvider(fail_before=True))
    with pytest.raises(ProviderFailed):
        chat.reply(chat.start("hi", "general", "c"))
    assert queue.active == 0 and len(memory) == 0


def test_stream_holds_the_slot_until_it_ends():
    chat, queue, _ = service(FakeProvider())
    tokens = chat.stream(chat.start("hi", "general", None))
    assert queue.active == 1
    with pytest.raises(QueueFull):
        chat.stream(chat.start("again", "general", None))
    assert texts(tokens) == ["a", "b", "c"]
    assert queue.active == 0


def test_stream_failing_mid_way_frees_the_slot_and_keeps_the_partial():
    chat, queue, memory = service(FakeProvider(fail_after=2))
    tokens = iter(chat.stream(chat.start("hi", "general", "c")))
    with pytest.raises(StreamBroken):
        list(tokens)
    assert queue.active == 0
    assert [m.content for m in memory.history("c")] == ["hi", "ab"]


def test_stream_closed_by_the_server_frees_the_slot_and_upstream():
    provider = FakeProvider()
    chat, queue, _ = service(provider)
    tokens = chat.stream(chat.start("hi", "general", None))
    next(iter(tokens))
    tokens.close()
    assert queue.active == 0 and provider.streams[0].closed


def test_stream_dropped_before_its_first_token_frees_the_slot():
    provider = FakeProvider()
    chat, queue, memory = service(provider)
    chat.stream(chat.start("hi", "general", "c")).close()
    assert queue.active == 0 and provider.streams[0].closed
    assert len(memory) == 0


def test_stream_failing_before_its_first_token_frees_the_slot():
    chat, queue, _ = service(FakeProvider(fail_before=True))
    with pytest.raises(ProviderFailed):
        chat.stream(chat.start("hi", "general", None))
    assert queue.active == 0
