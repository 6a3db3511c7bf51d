"""Stopping like systemd does (SIGTERM): running streams get a bounded grace period."""

from __future__ import annotations

import time

import pytest
import requests

from tests.support.fake_ollama import Behaviour


def start_stream(server):
    response = requests.post(
        server.url + "/chat",
        json={"message": "hi", "stream": True},
        stream=True,
        timeout=20,
    )
    chunks = response.iter_content(chunk_size=None)
    return response, chunks, next(chunks)


def test_a_running_stream_finishes_within_the_grace_period(launch, ollama):
    tokens = [f"w{i} " for i in range(8)]
    ollama.behaviour = Behaviour(tokens=tokens, delay=0.2)
    server = launch({"OLLAMA_HOST": ollama.url, "GRACEFUL_TIMEOUT": "10"})
    server.wait_ready()
    response, chunks, first = start_stream(server)
    server.process.terminate()
    received = first + b"".join(chunks)
    assert received.decode() == "".join(tokens)
    assert server.wait_exit(15) == 0
    # No new connections once stopping.
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/health", timeout=2)


def test_a_stream_longer_than_the_grace_period_is_cut_when_it_ends(launch, ollama):
    ollama.behaviour = Behaviour(tokens=[f"w{i} " for i in range(100)], delay=0.2)
    server = launch({"OLLAMA_HOST": ollama.url, "GRACEFUL_TIMEOUT": "1"})
    server.wait_ready()
    response, chunks, _ = start_stream(server)
    stopped = time.monotonic()
    server.process.terminate()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        b"".join(chunks)
    server.wait_exit(15)
    # Bounded: gone after the grace period, long before the 20 s reply would end.
    assert time.monotonic() - stopped < 10
